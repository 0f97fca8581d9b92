#!/usr/bin/env python
"""See ``python tools/export.py --help``."""
import sys

from hardnet_backbones.cli.export import main

if __name__ == '__main__':
    sys.exit(main())
