"""Internal: one model measured in this process, printed as JSON (run by :func:`~.measure.run_benchmark`)."""
import argparse
import json
import os
import sys
from typing import List

import torch

from .measure import BenchConfig, measure_model


def _worker_main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description='internal: measure one model and print JSON')
    parser.add_argument('--worker', nargs=3, metavar=('MODEL', 'MODE', 'CONFIG_JSON'), required=True)
    args = parser.parse_args(argv)
    name, mode, cfg_json = args.worker
    values = json.loads(cfg_json)
    values['image_size'] = tuple(values['image_size'])
    torch.set_num_threads(int(os.environ.get('BENCH_THREADS', torch.get_num_threads())))
    print(json.dumps(measure_model(name, BenchConfig(**values), mode)))


if __name__ == '__main__':
    _worker_main(sys.argv[1:])
