#!/usr/bin/env python
"""See ``python tools/segment.py --help``."""
import sys

from hardnet_backbones.cli.segment import main

if __name__ == '__main__':
    sys.exit(main())
