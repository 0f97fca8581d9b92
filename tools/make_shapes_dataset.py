#!/usr/bin/env python
"""See ``python tools/make_shapes_dataset.py --help``."""
import sys

from hardnet_backbones.cli.make_shapes_dataset import main

if __name__ == '__main__':
    sys.exit(main())
