"""A literal re-implementation of the published CenterNet-HarDNet network and of its decoding and targets, in the
published module layout (``base``, ``last_proj``, ``last_blk``, ``conv1x1_up``, ``denseBlocksUp``, ``hm``,
``wh``), written from the description of the original code, separately from the package. The tests load the same
random weights into both and compare outputs; nothing here is imported by the package."""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Conv(nn.Sequential):
    def __init__(self, cin, cout, kernel=3, stride=1):
        super().__init__()
        self.add_module('conv', nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False))
        self.add_module('norm', nn.BatchNorm2d(cout))
        self.add_module('relu', nn.ReLU(True))


def link_of(layer, base_ch, growth, grmul):
    if layer == 0:
        return base_ch, 0, []
    out, link = growth, []
    for i in range(10):
        if layer % (2 ** i) == 0:
            link.append(layer - 2 ** i)
            if i > 0:
                out *= grmul
    out = int(int(out + 1) / 2) * 2
    return out, sum(link_of(k, base_ch, growth, grmul)[0] for k in link), link


class Block(nn.Module):
    def __init__(self, cin, growth, grmul, n):
        super().__init__()
        self.links, layers, self.out_ch = [], [], 0
        for i in range(n):
            out, inp, link = link_of(i + 1, cin, growth, grmul)
            self.links.append(link)
            layers.append(Conv(inp, out))
            if i % 2 == 0 or i == n - 1:
                self.out_ch += out
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        outs = [x]
        for layer, link in zip(self.layers, self.links):
            tin = [outs[k] for k in link]
            outs.append(layer(torch.cat(tin, 1) if len(tin) > 1 else tin[0]))
        return torch.cat([o for i, o in enumerate(outs) if i == len(outs) - 1 or i % 2 == 1], 1)


ARCH = {
    85: dict(first=(48, 96), widths=(192, 256, 320, 480, 720), gr=(24, 24, 28, 36, 48), n=(8, 16, 16, 16, 16),
             proj=(784, 256), last=(768, 80), skips=(1, 3, 8, 13), sc=(32, 32, 0), up_gr=(64, 48, 28),
             up_n=(8, 8, 4), up_ch=(256, 192, 96), channels=(96, 214, 458, 784), concat_steps=3),
    68: dict(first=(32, 64), widths=(128, 256, 320, 640), gr=(14, 16, 20, 40), n=(8, 16, 16, 16),
             proj=(654, 192), last=(576, 72), skips=(1, 3, 8, 11), sc=(32, 32, 0), up_gr=(48, 32, 20),
             up_n=(8, 8, 4), up_ch=(256, 128, 64), channels=(64, 124, 328, 654), concat_steps=2),
}


class ReferenceCenterNet(nn.Module):
    def __init__(self, arch, classes=80):
        super().__init__()
        a = self.a = ARCH[arch]
        base = [Conv(3, a['first'][0], 3, 2), Conv(*a['first']), nn.AvgPool2d(3, 2, 1)]
        ch = a['first'][1]
        blocks = len(a['n'])
        for i in range(blocks):
            blk = Block(ch, a['gr'][i], 1.7, a['n'][i])
            base.append(blk)
            ch = blk.out_ch
            if i != blocks - 1:
                base.append(Conv(ch, a['widths'][i], 1))
            ch = a['widths'][i]
            if i == 0:
                base.append(nn.AvgPool2d(2, 2, ceil_mode=True))
            elif i not in (1, 3, blocks - 1):
                base.append(nn.AvgPool2d(2, 2))
        self.base = nn.ModuleList(base)
        self.last_proj = Conv(*a['proj'], 1)
        self.last_blk = Block(*a['last'], 1.7, 8)
        prev = self.last_blk.out_ch
        self.conv1x1_up, self.denseBlocksUp = nn.ModuleList(), nn.ModuleList()
        for i in range(3):
            cur = prev + a['channels'][3 - i] if i < a['concat_steps'] else prev
            self.conv1x1_up.append(Conv(cur, a['up_ch'][i], 1))
            blk = Block((a['up_ch'][i] - a['sc'][i]) * 3, a['up_gr'][i], 1.7, a['up_n'][i])
            self.denseBlocksUp.append(blk)
            prev = blk.out_ch
        prev += sum(a['sc'])
        self.hm = nn.Sequential(nn.Conv2d(prev, max(128, 4 * classes), 3, padding=1), nn.ReLU(True),
                                nn.Conv2d(max(128, 4 * classes), classes, 1))
        self.wh = nn.Sequential(nn.Conv2d(prev, 128, 3, padding=1), nn.ReLU(True), nn.Conv2d(128, 4, 1))

    @staticmethod
    def _context(x):
        return torch.cat([x, F.avg_pool2d(x, 9, 1, 4), x / (x.sum((2, 3), keepdim=True) + 0.1)], 1)

    def forward(self, x):
        xs, aside = [], []
        for i, m in enumerate(self.base):
            x = m(x)
            if i in self.a['skips']:
                xs.append(x)
        x = self.last_blk(self._context(F.avg_pool2d(self.last_proj(x), 2, 2)))
        for i in range(3):
            skip = xs[3 - i]
            x = F.interpolate(x, size=skip.shape[2:], mode='bilinear', align_corners=True)
            if i < self.a['concat_steps']:
                x = torch.cat([x, skip], 1)
            x = self.conv1x1_up[i](x)
            if self.a['sc'][i]:
                aside.append(x[:, -self.a['sc'][i]:])
                x = x[:, :-self.a['sc'][i]]
            x = self.denseBlocksUp[i](self._context(x))
        outs = [x]
        for s in aside:
            outs.insert(0, F.interpolate(s, size=x.shape[2:], mode='bilinear', align_corners=True))
        x = torch.cat(outs, 1)
        return self.hm(x), self.wh(x)


def reference_decode(heat, wh, k=100):
    """Peaks by 3x3 max pooling, top k per class, then top k overall; boxes on the output grid."""
    b, c, h, w = heat.shape
    keep = (F.max_pool2d(heat, 3, 1, 1) == heat).float()
    heat = heat * keep
    s, ind = torch.topk(heat.view(b, c, -1), k)
    ys, xs = (ind // w).float(), (ind % w).float()
    score, i = torch.topk(s.view(b, -1), k)
    cls = (i // k)
    gather = lambda t: t.view(b, -1).gather(1, i)  # noqa: E731
    ind, ys, xs = gather(ind), gather(ys), gather(xs)
    flat = wh.view(b, 4, -1)
    pick = lambda ch: flat[:, ch].gather(1, ind)  # noqa: E731
    x, y = xs + pick(2), ys + pick(3)
    bw, bh = pick(0), pick(1)
    return torch.stack([x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2], -1), score, cls


def reference_radius(size, min_overlap=0.7):
    height, width = size
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + np.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + np.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def reference_gaussian(shape, sigma):
    m, n = [(s - 1.) / 2. for s in shape]
    y, x = np.ogrid[-m:m + 1, -n:n + 1]
    g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    return g


def reference_targets(boxes, labels, classes, h, w):
    """Heatmap, dense size / offset targets and their weights, loop by loop as the published sampler draws them."""
    hm = np.zeros((classes, h, w), np.float32)
    wh = np.zeros((2, h, w), np.float32)
    off = np.zeros((2, h, w), np.float32)
    weight = np.zeros((h, w), np.float32)
    for box, cls in zip(boxes, labels):
        box = np.array(box, np.float64)
        orig_h, orig_w = box[3] - box[1], box[2] - box[0]
        box[[0, 2]] = np.clip(box[[0, 2]], 0, w)
        box[[1, 3]] = np.clip(box[[1, 3]], 0, h)
        bh, bw = box[3] - box[1], box[2] - box[0]
        keeps_h, keeps_w = bh > 2 or bh / (orig_h + 0.01) > 0.5, bw > 2 or bw / (orig_w + 0.01) > 0.5
        if bh <= 0 or bw <= 0 or not (keeps_h and keeps_w):
            continue
        r = max(0, int(reference_radius((math.ceil(bh), math.ceil(bw)))))
        ct = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        cx, cy = ct.astype(np.int32)
        d = 2 * r + 1
        peak = reference_gaussian((d, d), d / 6)
        dense = reference_gaussian((d, d), d / 24)
        dense = dense / dense.sum()
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                py, px = cy + dy, cx + dx
                if not (0 <= py < h and 0 <= px < w):
                    continue
                hm[cls, py, px] = max(hm[cls, py, px], peak[dy + r, dx + r])
                if dense[dy + r, dx + r] > weight[py, px]:
                    weight[py, px] = dense[dy + r, dx + r]
                    wh[:, py, px] = bw, bh
                    off[:, py, px] = ct[0] - px, ct[1] - py
    return hm, wh, off, weight


def reference_focal(logits, gt):
    pred = torch.clamp(torch.sigmoid(logits), 1e-4, 1 - 1e-4)
    pos, neg = gt.eq(1).float(), gt.lt(1).float()
    pos_loss = (torch.log(pred) * torch.pow(1 - pred, 2) * pos).sum()
    neg_loss = (torch.log(1 - pred) * torch.pow(pred, 2) * torch.pow(1 - gt, 4) * neg).sum()
    n = pos.sum()
    return -neg_loss if n == 0 else -(pos_loss + neg_loss) / n


# the published training augmentation, written as the CornerNet / CenterNet data code does it: an affine matrix from
# three point pairs, the image warped in BGR, boxes through the matrix, colour functions on BGR floats, in place
EIG_VAL = np.array([0.2141788, 0.01817699, 0.00341571], dtype=np.float32)
EIG_VEC_BGR = np.array([[-0.58752847, -0.69563484, 0.41340352],
                        [-0.5832747, 0.00994535, -0.81221408],
                        [-0.56089297, 0.71832671, 0.41158938]], dtype=np.float32)


def _affine_from_points(scale_x, scale_y, shift_x, shift_y):
    import cv2
    src = np.array([[0, 0], [1, 0], [0, 1]], np.float32)
    dst = np.array([[shift_x, shift_y], [shift_x + scale_x, shift_y], [shift_x, shift_y + scale_y]], np.float32)
    return cv2.getAffineTransform(src, dst)


def _blend(alpha, image1, image2):
    image1 *= alpha
    image2 *= (1 - alpha)
    image1 += image2


def reference_augment(image_rgb, boxes, size, scale_x, scale_y, shift_x, shift_y, flip, color_order, factors,
                      lighting):
    """(image RGB float, boxes) of the published augmentation with every random draw given."""
    import cv2
    image = image_rgb[:, :, ::-1].copy()  # the original reads BGR
    trans = _affine_from_points(scale_x, scale_y, shift_x, shift_y)
    inp = cv2.warpAffine(image, trans, (size, size), flags=cv2.INTER_LINEAR)
    out_boxes = []
    for box in boxes:
        x0, y0 = trans @ np.array([box[0], box[1], 1.0])
        x1, y1 = trans @ np.array([box[2], box[3], 1.0])
        if flip:
            x0, x1 = size - x1, size - x0
        out_boxes.append([x0, y0, x1, y1])
    if flip:
        inp = inp[:, ::-1, :]
    inp = inp.astype(np.float32) / 255.
    if color_order is not None:
        gs = cv2.cvtColor(inp, cv2.COLOR_BGR2GRAY)
        gs_mean = gs.mean()
        for name in color_order:
            alpha = factors[name]
            if name == 'brightness':
                inp *= alpha
            elif name == 'contrast':
                _blend(alpha, inp, gs_mean)
            else:
                _blend(alpha, inp, gs[:, :, None].copy())
        inp += np.dot(EIG_VEC_BGR, EIG_VAL * np.asarray(lighting, np.float32))
    return inp[:, :, ::-1], np.array(out_boxes, np.float32).reshape(-1, 4)
