#!/usr/bin/env python
"""Classify images with HarDNet; see ``python tools/classify.py --help``."""
import sys

from hardnet_backbones.cli.classify import main

if __name__ == '__main__':
    sys.exit(main())
