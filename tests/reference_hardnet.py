"""An independent, deliberately literal HarDNet used only as a test oracle.

It follows the block rule of docs/architecture.md step by step with the published module layout (one ``base``
ModuleList), so its state-dict keys are exactly the published ones. Tests load its weights into
our model through ``checkpoint_filter_fn`` and require identical outputs.
"""
from collections import OrderedDict

import torch
import torch.nn as nn

VARIANTS = {
    'hardnet39ds': dict(first=(24, 48), k2=1, dw=True, grmul=1.6, gr=(16, 20, 64, 160), n=(4, 16, 8, 4),
                        ch=(96, 320, 640, 1024), down=(1, 1, 1, 0), drop=0.05),
    'hardnet68ds': dict(first=(32, 64), k2=1, dw=True, grmul=1.7, gr=(14, 16, 20, 40, 160), n=(8, 16, 16, 16, 4),
                        ch=(128, 256, 320, 640, 1024), down=(1, 0, 1, 1, 0), drop=0.05),
    'hardnet68': dict(first=(32, 64), k2=3, dw=False, grmul=1.7, gr=(14, 16, 20, 40, 160), n=(8, 16, 16, 16, 4),
                      ch=(128, 256, 320, 640, 1024), down=(1, 0, 1, 1, 0), drop=0.1),
    'hardnet85': dict(first=(48, 96), k2=3, dw=False, grmul=1.7, gr=(24, 24, 28, 36, 48, 256),
                      n=(8, 16, 16, 16, 16, 4), ch=(192, 256, 320, 480, 720, 1280), down=(1, 0, 1, 0, 1, 0),
                      drop=0.2),
}


def conv(cin, cout, k=3, s=1, act=nn.ReLU6):
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(cin, cout, k, s, k // 2, bias=False), norm=nn.BatchNorm2d(cout), relu=act()))


def dwconv(c, s=1):
    return nn.Sequential(OrderedDict(dwconv=nn.Conv2d(c, c, 3, s, 1, groups=c, bias=False), norm=nn.BatchNorm2d(c)))


class RefBlock(nn.Module):
    def __init__(self, cin, gr, grmul, n, dw=False, act=nn.ReLU6):
        super().__init__()
        self.links, widths, layers = [], [cin], []
        for k in range(1, n + 1):
            link = [k - 2 ** i for i in range(10) if k % 2 ** i == 0 and k - 2 ** i >= 0]
            out = gr * grmul ** (len(link) - 1)
            out = int(int(out + 1) / 2) * 2
            inch = sum(widths[j] for j in link)
            if dw:
                layers.append(nn.Sequential(OrderedDict(layer1=conv(inch, out, 1, act=act), layer2=dwconv(out))))
            else:
                layers.append(conv(inch, out, act=act))
            self.links.append(link)
            widths.append(out)
        self.layers = nn.ModuleList(layers)
        self.out_ch = sum(widths[k] for k in range(1, n + 1) if k % 2 == 1 or k == n)

    def forward(self, x):
        outs = [x]
        for link, layer in zip(self.links, self.layers):
            outs.append(layer(torch.cat([outs[j] for j in link], 1)))
        n = len(outs) - 1
        return torch.cat([outs[k] for k in range(1, n + 1) if k % 2 == 1 or k == n], 1)


class RefHarDNet(nn.Module):
    def __init__(self, name):
        super().__init__()
        v = VARIANTS[name]
        base = [conv(3, v['first'][0], 3, 2), conv(v['first'][0], v['first'][1], v['k2'])]
        base.append(dwconv(v['first'][1], 2) if v['dw'] else nn.MaxPool2d(3, 2, 1))
        ch = v['first'][1]
        for i, n in enumerate(v['n']):
            blk = RefBlock(ch, v['gr'][i], v['grmul'], n, v['dw'])
            base.append(blk)
            if i == len(v['n']) - 1 and name == 'hardnet85':
                base.append(nn.Dropout(0.1))
            base.append(conv(blk.out_ch, v['ch'][i], 1))
            ch = v['ch'][i]
            if v['down'][i]:
                base.append(dwconv(ch, 2) if v['dw'] else nn.MaxPool2d(2, 2))
        base.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(v['drop']), nn.Linear(ch, 1000)))
        self.base = nn.ModuleList(base)

    def forward(self, x):
        for layer in self.base:
            x = layer(x)
        return x
