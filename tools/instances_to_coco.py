#!/usr/bin/env python
"""See ``python tools/instances_to_coco.py --help``."""
import sys

from hardnet_backbones.cli.instances_to_coco import main

if __name__ == '__main__':
    sys.exit(main())
