#!/usr/bin/env python
"""See ``python tools/app.py --help`` and docs/app.md."""
import sys

from hardnet_backbones.app.main import main

if __name__ == '__main__':
    sys.exit(main())
