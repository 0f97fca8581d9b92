#!/usr/bin/env python
"""See ``python tools/detect.py --help``."""
import sys

from hardnet_backbones.cli.detect import main

if __name__ == '__main__':
    sys.exit(main())
