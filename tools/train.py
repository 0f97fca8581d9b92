#!/usr/bin/env python
"""See ``python tools/train.py --help``."""
import sys

from hardnet_backbones.cli.train import main

if __name__ == '__main__':
    sys.exit(main())
