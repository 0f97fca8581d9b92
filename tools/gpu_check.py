#!/usr/bin/env python
"""See ``python tools/gpu_check.py --help``."""
import sys

from hardnet_backbones.cli.gpu_check import main

if __name__ == '__main__':
    sys.exit(main())
