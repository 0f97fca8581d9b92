#!/usr/bin/env python
"""See ``python tools/benchmark.py --help``."""
import sys

from hardnet_backbones.cli.benchmark import main

if __name__ == '__main__':
    sys.exit(main())
