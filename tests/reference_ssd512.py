"""A literal re-implementation of the published SSD512-HarDNet networks and priors, in the published module layout
(``base``, ``bridge``, ``extras``, ``L2Norm``, ``loc``, ``conf``; BGR input minus the means on 0-255), written
from the description of the original code, separately from the package."""
import itertools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .reference_centernet import Block, Conv

ARCH = {
    68: dict(first=(32, 64), widths=(128, 256, 320, 640), gr=(14, 16, 20, 40), n=(8, 16, 16, 16), c=640),
    85: dict(first=(48, 96), widths=(192, 256, 320, 480, 720), gr=(24, 24, 28, 36, 48), n=(8, 16, 16, 16, 16),
             c=720),
}


class ReferenceSSD512(nn.Module):
    def __init__(self, arch, classes=81):
        super().__init__()
        a = ARCH[arch]
        base = [Conv(3, a['first'][0], 3, 2), Conv(*a['first']), nn.MaxPool2d(3, 2, 1)]
        ch = a['first'][1]
        for i in range(len(a['n'])):
            blk = Block(ch, a['gr'][i], 1.7, a['n'][i])
            base.append(blk)
            base.append(Conv(blk.out_ch, a['widths'][i], 1))
            ch = a['widths'][i]
            if i == 0:
                base.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            elif i == 2:
                base.append(nn.MaxPool2d(2, 2))
        if arch == 68:
            base.append(nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(640, 640, 3, padding=4, dilation=4, bias=False),
                                      nn.BatchNorm2d(640), nn.ReLU(True), Conv(640, 640, 1)))
        self.arch = arch
        self.base = nn.ModuleList(base)
        if arch == 85:
            self.bridge = nn.Sequential(nn.MaxPool2d(3, 1, 1), Conv(720, 960, 3), Conv(960, 720, 1))
        c = a['c']
        self.extras = nn.ModuleList([
            nn.Conv2d(c, 256, 1), nn.Conv2d(256, 512, 3, 2, 1), nn.Conv2d(512, 128, 1), nn.Conv2d(128, 256, 3, 2, 1),
            nn.Conv2d(256, 128, 1), nn.Conv2d(128, 256, 3, 2, 1), nn.Conv2d(256, 128, 1), nn.Conv2d(128, 256, 3, 2, 1),
            nn.Conv2d(256, 128, 1), nn.Conv2d(128, 256, 4, 1, 1)])
        self.L2Norm = nn.Module()
        self.L2Norm.weight = nn.Parameter(torch.full((320,), 20.0))
        sources = [320, c, 512, 256, 256, 256, 256]
        boxes = [6, 6, 6, 6, 6, 4, 4]
        self.loc = nn.ModuleList([nn.Conv2d(s, b * 4, 3, padding=1) for s, b in zip(sources, boxes)])
        self.conf = nn.ModuleList([nn.Conv2d(s, b * classes, 3, padding=1) for s, b in zip(sources, boxes)])
        self.classes = classes

    def forward(self, x):
        sources = []
        for i, m in enumerate(self.base):
            x = m(x)
            if i == 9:
                norm = x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10
                sources.append(self.L2Norm.weight[None, :, None, None] * x / norm)
        if self.arch == 85:
            x = self.bridge(x)
        sources.append(x)
        for k, v in enumerate(self.extras):
            x = F.relu(v(x), inplace=True)
            if k % 2 == 1:
                sources.append(x)
        loc = torch.cat([l(s).permute(0, 2, 3, 1).reshape(x.shape[0], -1) for s, l in zip(sources, self.loc)], 1)
        conf = torch.cat([c(s).permute(0, 2, 3, 1).reshape(x.shape[0], -1) for s, c in zip(sources, self.conf)], 1)
        return loc.view(x.shape[0], -1, 4), conf.view(x.shape[0], -1, self.classes)


def reference_priors():
    """The published COCO_512 prior boxes, relative (cx, cy, w, h), clipped to [0, 1]."""
    maps, steps = [64, 32, 16, 8, 4, 2, 1], [8, 16, 32, 64, 128, 256, 512]
    min_sizes = [20.48, 51.2, 133.12, 215.04, 296.96, 378.88, 460.8]
    max_sizes = [51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72]
    ratios = [[2, 3]] * 5 + [[2], [2]]
    out = []
    for k, f in enumerate(maps):
        for i, j in itertools.product(range(f), repeat=2):
            fk = 512 / steps[k]
            cx, cy = (j + 0.5) / fk, (i + 0.5) / fk
            s = min_sizes[k] / 512
            out += [cx, cy, s, s]
            s2 = math.sqrt(s * (max_sizes[k] / 512))
            out += [cx, cy, s2, s2]
            for ar in ratios[k]:
                out += [cx, cy, s * math.sqrt(ar), s / math.sqrt(ar)]
                out += [cx, cy, s / math.sqrt(ar), s * math.sqrt(ar)]
    return torch.tensor(out).view(-1, 4).clamp(0, 1)


def reference_decode(loc, priors, variances=(0.1, 0.2)):
    """The published decoding: offsets relative to the priors (cx, cy, w, h) -> relative corners, no clamping."""
    centres = priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:]
    sizes = priors[:, 2:] * torch.exp(loc[:, 2:] * variances[1])
    return torch.cat([centres - sizes / 2, centres + sizes / 2], 1)


def reference_detect(boxes, scores, thresh=0.02, nms_iou=0.45, per_class=50, per_image=200):
    """The published test loop on one image: for each class above the threshold, NMS then the first per_class;
    over the image, every detection scoring at least the per_image-th best score. Rows: (class, score, box)."""
    from torchvision.ops import nms
    found = []
    for j in range(1, scores.shape[1]):
        inds = torch.nonzero(scores[:, j] > thresh).flatten()
        if len(inds) == 0:
            continue
        c_boxes, c_scores = boxes[inds], scores[inds, j]
        keep = nms(c_boxes, c_scores, nms_iou)[:per_class]
        found += [(j, float(c_scores[k]), c_boxes[k].tolist()) for k in keep]
    if len(found) > per_image:
        image_thresh = sorted(s for _, s, _ in found)[-per_image]
        found = [f for f in found if f[1] >= image_thresh]
    return found


def reference_coco_results(found):
    """The published COCO json rows of reference_detect's output: [x1, y1, x2 - x1 + 1, y2 - y1 + 1]."""
    return [(j, s, [b[0], b[1], b[2] - b[0] + 1, b[3] - b[1] + 1]) for j, s, b in found]
