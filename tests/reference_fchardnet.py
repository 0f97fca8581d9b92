"""A literal FC-HarDNet-70 in the original module layout, used only as a test oracle."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import reference_hardnet


def conv(cin, cout, k=3, s=1):
    return reference_hardnet.conv(cin, cout, k, s, act=nn.ReLU)


def RefBlock(cin, gr, grmul, n):  # noqa: N802  (reads like the class it builds)
    return reference_hardnet.RefBlock(cin, gr, grmul, n, act=nn.ReLU)


class RefFCHarDNet(nn.Module):
    def __init__(self, n_classes=19):
        super().__init__()
        first, chs, gr, n = [16, 24, 32, 48], [64, 96, 160, 224, 320], [10, 16, 18, 24, 32], [4, 4, 8, 8, 8]
        base = [conv(3, first[0], 3, 2), conv(first[0], first[1]),
                conv(first[1], first[2], 3, 2), conv(first[2], first[3])]
        self.shortcuts, skip_chs, ch = [], [], first[3]
        for i in range(5):
            blk = RefBlock(ch, gr[i], 1.7, n[i])
            base.append(blk)
            if i < 4:
                self.shortcuts.append(len(base) - 1)
                skip_chs.append(blk.out_ch)
            base.append(conv(blk.out_ch, chs[i], 1))
            ch = chs[i]
            if i < 4:
                base.append(nn.AvgPool2d(2, 2))
        self.base = nn.ModuleList(base)
        self.conv1x1_up, self.denseBlocksUp = nn.ModuleList(), nn.ModuleList()
        for i in range(3, -1, -1):
            cur = ch + skip_chs[i]
            self.conv1x1_up.append(conv(cur, cur // 2, 1))
            blk = RefBlock(cur // 2, gr[i], 1.7, n[i])
            self.denseBlocksUp.append(blk)
            ch = blk.out_ch
        self.finalConv = nn.Conv2d(ch, n_classes, 1)

    def forward(self, x):
        size, skips = x.shape[-2:], []
        for i, layer in enumerate(self.base):
            x = layer(x)
            if i in self.shortcuts:
                skips.append(x)
        for reduce, block in zip(self.conv1x1_up, self.denseBlocksUp):
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode='bilinear', align_corners=True)
            x = block(reduce(torch.cat([x, skip], 1)))
        return F.interpolate(self.finalConv(x), size=size, mode='bilinear', align_corners=True)
