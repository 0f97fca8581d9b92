#!/usr/bin/env python
"""See ``python tools/evaluate.py --help``."""
import sys

from hardnet_backbones.cli.evaluate import main

if __name__ == '__main__':
    sys.exit(main())
