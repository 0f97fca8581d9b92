#!/usr/bin/env python
"""The README's main job: classify a sample image with the published HarDNet-68 weights.

The weights are downloaded once (SHA-256 checked) into the torch hub cache. Offline, pass a
local copy: ``python tools/demo.py --checkpoint hardnet68-5d684880.pth``.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from hardnet_backbones.cli import classify


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', default=None, help='local published-format weights for hardnet68')
    parser.add_argument('--out-dir', default='runs/demo', help='where the sample image is written')
    args = parser.parse_args()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image = out_dir / 'sample.png'
    y, x = np.mgrid[0:256, 0:256]
    rgb = np.stack([x, y, 255 - (x + y) // 2], -1).astype(np.uint8)
    Image.fromarray(rgb).save(image)
    argv = [str(image), '--model', 'hardnet68', '--output', str(out_dir / 'predictions.json')]
    if args.checkpoint:
        argv += ['--checkpoint', args.checkpoint]
    return classify.main(argv)


if __name__ == '__main__':
    sys.exit(main())
