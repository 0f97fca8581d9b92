"""Check the CUDA paths on one GPU in a few minutes: AMP training steps, NCCL collectives, the benchmark.

What runs (each step reported as passed/failed with its time, all of it in ``<out-dir>/gpu_check.json``):

1. AMP (float16 autocast + GradScaler) training steps of a detector and a segmenter, through the
   engine's own task code (losses, optimizer, scaler), checking the losses stay finite.
2. A one-process NCCL process group, built as ``torchrun`` runs build it, through the engine's own
   collectives: ``all_reduce_sum`` of a CUDA and of a CPU tensor, ``all_gather_objects``.
3. ``tools/benchmark.py --device cuda`` on two classifiers and a detector (inference and training).
"""
import argparse
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

from ..utils.files import write_text_atomic

_logger = logging.getLogger('hardnet.gpu_check')


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out-dir', default='runs/gpu_check', help='report folder (default: %(default)s)')
    parser.add_argument('--steps', type=int, default=6, help='AMP training steps per model (default: %(default)s)')
    parser.add_argument('--skip-benchmark', action='store_true', help='leave out step 3')
    return parser


def _amp_steps(task_name: str, model_name: str, steps: int, device: str = 'cuda') -> Dict[str, Any]:
    """AMP training steps of one model (on a CPU without AMP: the tests run this code path there)."""
    from ..engine.config import load_config
    from ..engine.task import create_task

    overrides = [f'task={task_name}', f'model.name={model_name}', 'train.amp=true']
    if task_name == 'segmentation':
        overrides.append('model.num_classes=4')
    cfg = load_config(None, overrides)
    task = create_task(cfg)
    device = torch.device(device)
    amp = device.type == 'cuda'
    model = task.build_model(4).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler('cuda', enabled=amp)
    generator = torch.Generator().manual_seed(0)
    if task_name == 'detection':
        images = [torch.rand(3, 320, 320, generator=generator) for _ in range(4)]
        targets = [dict(boxes=torch.tensor([[40., 50., 200., 220.]]), labels=torch.tensor([1 + i % 3]))
                   for i in range(4)]
        batch: Any = (images, targets)
    else:
        masks = torch.randint(0, 4, (4, 256, 256), generator=generator)
        batch = (torch.rand(4, 3, 256, 256, generator=generator), masks)
    losses = []
    for _ in range(steps):
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss, _ = task.loss(model, batch, device)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss))
    if not all(torch.isfinite(torch.tensor(losses))):
        raise FloatingPointError(f'non-finite AMP losses: {losses}')
    return dict(losses=losses, scale=float(scaler.get_scale()),
                max_memory_mb=torch.cuda.max_memory_allocated() / 2 ** 20 if amp else None)


def _nccl_collectives() -> Dict[str, Any]:
    import torch.distributed as dist

    from ..utils import distributed

    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=os.environ.get('MASTER_PORT', '29533'),
                      RANK='0', WORLD_SIZE='1', LOCAL_RANK='0')
    info = distributed.init_distributed('cuda')
    try:
        if not dist.is_initialized():  # a world of one is not initialised by the engine: do what torchrun would
            dist.init_process_group(backend=distributed.process_group_backend(info.device))
        summed_gpu = distributed.all_reduce_sum(torch.arange(4.0, device=info.device))
        summed_cpu = distributed.all_reduce_sum(torch.arange(4.0))  # the trainer's epoch statistics are on the CPU
        gathered = distributed.all_gather_objects({'rank': info.rank})
        if summed_gpu.tolist() != [0, 1, 2, 3] or summed_cpu.tolist() != [0, 1, 2, 3] or summed_cpu.is_cuda:
            raise RuntimeError(f'wrong collective results: {summed_gpu}, {summed_cpu}')
        return dict(backend=str(dist.get_backend()), gathered=gathered)
    finally:
        distributed.cleanup_distributed()


def _benchmark(out_dir: Path) -> Dict[str, Any]:
    from .benchmark import main as benchmark_main

    code = benchmark_main(['--models', 'hardnet68', 'resnet50', 'hardnet39ds', 'mobilenetv2_100',
                           '--device', 'cuda', '--batch-size', '32', '--warmup', '5', '--iters', '20',
                           '--output', str(out_dir / 'benchmark_cuda')])
    if code != 0:
        raise RuntimeError(f'benchmark exited with {code}')
    return dict(results=str(out_dir / 'benchmark_cuda.md'))


def _step(name: str, fn: Callable[[], Dict[str, Any]], report: List[Dict[str, Any]]) -> None:
    start = time.time()
    try:
        details = fn()
        report.append(dict(step=name, passed=True, seconds=round(time.time() - start, 1), **details))
        _logger.info('PASS %s (%.1f s)', name, time.time() - start)
    except Exception as e:  # report every step, then fail at the end
        report.append(dict(step=name, passed=False, seconds=round(time.time() - start, 1), error=repr(e),
                           traceback=traceback.format_exc()))
        _logger.error('FAIL %s: %r', name, e)


def main(argv: Optional[List[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    if not torch.cuda.is_available():
        _logger.error('no CUDA device here: gpu_check needs a GPU (it checks AMP, NCCL and CUDA benchmarks)')
        return 2
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report: List[Dict[str, Any]] = []
    for task_name, model_name in (('detection', 'ssdlite320_hardnet39ds'), ('segmentation', 'fcn_hardnet39ds')):
        _step(f'amp {task_name} {model_name}',
              lambda t=task_name, m=model_name: _amp_steps(t, m, args.steps), report)
    _step('nccl collectives', _nccl_collectives, report)
    if not args.skip_benchmark:
        _step('benchmark --device cuda', lambda: _benchmark(out_dir), report)
    summary = dict(device=torch.cuda.get_device_name(0), torch=torch.__version__, steps=report)
    write_text_atomic(out_dir / 'gpu_check.json', json.dumps(summary, indent=2))
    failed = [r['step'] for r in report if not r['passed']]
    _logger.info('%d of %d steps passed; report: %s', len(report) - len(failed), len(report),
                 out_dir / 'gpu_check.json')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
