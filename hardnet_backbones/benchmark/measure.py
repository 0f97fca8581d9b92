"""Speed and memory of models: timed steps, one model per fresh subprocess, or all interleaved in one process.

Each model is measured in a fresh subprocess (``python -m hardnet_backbones.benchmark.worker``), so
that CPU peak RSS figures do not leak from one model into the next; on CUDA the peak comes from
``torch.cuda.max_memory_allocated``. GMACs are counted with ``torch.utils.flop_counter`` on one
image (multiply-accumulates = FLOPs / 2).
"""
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.transforms.functional import to_tensor

from ..data.image_io import read_image
from ..deploy import OnnxRuntimeModel, export_onnx, fuse_for_inference, optimize_for_inference, quantize_to_onnx
from ..inference.batching import expand_image_paths
from ..utils.cpu import cpu_supports_bfloat16, describe_cpu
from .factory import build_benchmark_model, modes_for, split_variants, task_of, variant_kwargs

_logger = logging.getLogger(__name__)

__all__ = ['BenchConfig', 'measure_model', 'run_benchmark', 'run_interleaved', 'conv_ceiling_gflops', 'count_gmacs']


@dataclass
class BenchConfig:
    """One measurement setting, shared by every model of a run."""
    device: str = 'cpu'
    batch_size: int = 8
    image_size: Tuple[int, int] = (224, 224)  # (H, W); detectors resize internally to their own size
    dtype: str = 'float32'  # float32 | float16 | bfloat16 (autocast)
    channels_last: bool = False
    compile: bool = False
    fuse: bool = False  # fold BatchNorm into convolutions (inference only)
    warmup: int = 3
    iters: int = 10
    train: bool = True
    train_batch_size: Optional[int] = None  # default: batch_size
    grad_checkpointing: bool = False
    images: Optional[str] = None  # image folder, file or pattern to time on instead of random pixels


def _pixels(cfg: BenchConfig, batch: int, device: torch.device) -> torch.Tensor:
    """``batch`` images of ``cfg.image_size`` in [0, 1]: the first ones of ``cfg.images`` (repeated where there are
    fewer), each resized to that size, or random pixels."""
    h, w = cfg.image_size
    if not cfg.images:
        return torch.rand(batch, 3, h, w, device=device)
    paths = expand_image_paths([cfg.images])[:batch]
    resized = [F.interpolate(to_tensor(read_image(p))[None], size=(h, w), mode='bilinear', antialias=True,
                             align_corners=False)[0] for p in paths]
    return torch.stack([resized[i % len(resized)] for i in range(batch)]).clamp_(0, 1).to(device)


def _inputs(task: str, cfg: BenchConfig, batch: int, device: torch.device, channels_last: bool = False):
    h, w = cfg.image_size
    images = _pixels(cfg, batch, device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    if task == 'detection':
        boxes = torch.tensor([[0.1 * w, 0.1 * h, 0.6 * w, 0.7 * h]], device=device)
        targets = [dict(boxes=boxes, labels=torch.tensor([1], device=device)) for _ in range(batch)]
        return list(images), targets
    if task == 'segmentation':
        return images, torch.randint(0, 21, (batch, h, w), device=device)
    return images, torch.randint(0, 1000, (batch,), device=device)


def _loss(task: str, model: nn.Module, images, targets) -> torch.Tensor:
    if task == 'detection':
        return sum(model(images, targets).values())
    out = model(images)
    if task == 'segmentation':
        return sum(F.cross_entropy(v, targets) for v in out.values())
    return F.cross_entropy(out, targets)


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], warmup: int, iters: int, device: torch.device) -> List[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def count_gmacs(model: nn.Module, task: str, image_size: Tuple[int, int]) -> float:
    """Multiply-accumulates (G) of one forward pass on one image, in eval mode."""
    from torch.utils.flop_counter import FlopCounterMode
    images, _ = _inputs(task, BenchConfig(image_size=image_size), 1, torch.device('cpu'))
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images)
    return counter.get_total_flops() / 2 / 1e9


def _autocast(cfg: BenchConfig, device: torch.device):
    dtype = {'float16': torch.float16, 'bfloat16': torch.bfloat16}.get(cfg.dtype)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def _onnx_runner(model: nn.Module, task: str, images: Any, int8: bool, real: bool) -> Callable[[], Any]:
    """Time the model exported to ONNX (float32 or int8) and run in onnxruntime, images as the model takes them;
    int8 is calibrated on the timed images when they are ``real``, else on 4 random ones."""
    path = os.path.join(tempfile.mkdtemp(), 'model.onnx')
    size = tuple(images[0].shape[-2:])
    if int8:
        singles = [images[i:i + 1] if task != 'detection' else images[i] for i in range(len(images))]
        calibration = singles if real else [torch.rand_like(singles[0]) for _ in range(4)]
        quantize_to_onnx(model, path, task, calibration, size)
    else:
        export_onnx(model, path, task, size)
    runner = OnnxRuntimeModel(path, task)
    return lambda: runner(images)


def _prepare(name: str, cfg: BenchConfig, mode: str) -> Tuple[Callable[[], Any], int, Dict[str, Any]]:
    """``(step, batch size, facts)`` for one model: ``step()`` runs one timed iteration of ``mode``."""
    torch.manual_seed(0)
    device = torch.device(cfg.device)
    base, variants = split_variants(name)
    task = task_of(base)
    model = build_benchmark_model(base, **variant_kwargs(variants))
    result: Dict[str, Any] = dict(model=name, task=task)
    if mode == 'infer':
        result['params_m'] = sum(p.numel() for p in model.parameters()) / 1e6
        result['gmacs'] = count_gmacs(model, task, cfg.image_size)
        if cfg.fuse or 'fused' in variants:
            model = fuse_for_inference(model.eval())
        if 'bf16' in variants:  # the deployed form: fused, channels_last, bfloat16 autocast
            model = optimize_for_inference(model.eval(), task, precision='bfloat16')
    model = model.to(device)
    channels_last = cfg.channels_last or 'cl' in variants
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if (cfg.grad_checkpointing or 'ckpt' in variants) and hasattr(model, 'set_grad_checkpointing'):
        model.set_grad_checkpointing(True)
    runner = torch.compile(model) if cfg.compile else model
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    batch = cfg.batch_size if mode == 'infer' else (cfg.train_batch_size or cfg.batch_size)
    images, targets = _inputs(task, cfg, batch, device, channels_last)
    if mode == 'infer' and {'onnx', 'int8'} & set(variants):
        step = _onnx_runner(model.eval(), task, images, int8='int8' in variants, real=bool(cfg.images))
    elif mode == 'infer':
        model.eval()

        def step():
            with torch.inference_mode(), _autocast(cfg, device):
                runner(images)
    else:
        model.train()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

        def step():
            with _autocast(cfg, device):
                loss = _loss(task, runner, images, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return step, batch, result


def measure_model(name: str, cfg: BenchConfig, mode: str) -> Dict[str, Any]:
    """Measure one model in this process: ``mode`` is 'infer' or 'train'. ``name`` may carry variants."""
    device = torch.device(cfg.device)
    step, batch, result = _prepare(name, cfg, mode)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = _timed(step, cfg.warmup, cfg.iters, device)
    median = statistics.median(times)
    result[f'{mode}_images_per_s'] = batch / median
    result[f'{mode}_latency_ms_median'] = 1000 * median
    result[f'{mode}_latency_ms_p90'] = 1000 * sorted(times)[min(len(times) - 1, int(0.9 * len(times)))]
    if mode == 'infer':
        result['infer_op_share'] = op_class_shares(step, device)
    if device.type == 'cuda':
        result[f'{mode}_peak_mem_mb'] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    else:
        result[f'{mode}_peak_mem_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        # what the timed steps added on top of the process (interpreter, libraries, model, inputs)
        result[f'{mode}_step_mem_mb'] = result[f'{mode}_peak_mem_mb'] - rss_before
    return result


OP_CLASSES = ('convolution', 'concatenation', 'elementwise', 'other')
_ELEMENTWISE = ('clamp', 'hardtanh', 'relu', 'add', 'mul', 'sub', 'div', 'sigmoid', 'hardswish', 'silu', 'copy_',
                'batch_norm')


def _op_class(name: str) -> str:
    if 'conv' in name:
        return 'convolution'
    if name in ('aten::cat', 'aten::concat'):
        return 'concatenation'
    return 'elementwise' if any(op in name for op in _ELEMENTWISE) else 'other'


def op_class_shares(step: Callable[[], Any], device: torch.device, iters: int = 2) -> Optional[Dict[str, float]]:
    """Fractions of the operators' own time in convolutions, concatenations, elementwise ops (activations, adds,
    copies) and the rest, over ``iters`` steps in torch.profiler (device time on CUDA); None when no PyTorch
    operator ran (an onnxruntime model)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    with profile(activities=activities) as prof:
        for _ in range(iters):
            step()
        _sync(device)
    totals = dict.fromkeys(OP_CLASSES, 0.0)
    for event in prof.key_averages():
        spent = event.self_device_time_total if device.type == 'cuda' else event.self_cpu_time_total
        totals[_op_class(event.key)] += spent
    whole = sum(totals.values())
    if not whole or not totals['convolution']:
        return None
    return {k: v / whole for k, v in totals.items()}


def conv_ceiling_gflops(device: str = 'cpu', precision: str = 'float32', iters: int = 5) -> Optional[float]:
    """The machine's peak rate (GFLOP/s, best of ``iters``) with the kernels the models use: a large 3x3
    convolution, channels_last (oneDNN on CPUs), in ``precision`` ('float32' or 'bfloat16'). None for bfloat16
    where the CPU would emulate it (no AVX512_BF16 / AMX). ``torch.mm`` is no ceiling: on AMD CPUs MKL's GEMM
    runs far below oneDNN's convolutions."""
    dev = torch.device(device)
    if precision == 'bfloat16' and dev.type == 'cpu' and not cpu_supports_bfloat16()[0]:
        return None
    dtype = torch.bfloat16 if precision == 'bfloat16' else torch.float32
    batch, channels, side = (16, 256, 28) if dev.type == 'cpu' else (64, 256, 56)
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(dev, dtype).to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels, side, side, device=dev, dtype=dtype).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        best = min(_timed(lambda: conv(x), 2, iters, dev))
    return 2 * batch * side * side * channels * channels * 9 / best / 1e9


def _precision_of(variants: List[str]) -> str:
    return 'bfloat16' if 'bf16' in variants else 'int8' if 'int8' in variants else 'float32'


def run_interleaved(models: Dict[str, str], cfg: BenchConfig, rounds: int = 5,
                    progress: bool = True) -> List[Dict[str, Any]]:
    """Inference of every model in this process, interleaved: each round times ``cfg.iters`` iterations of
    every model in turn, so a slow spell of the machine hits all of them alike.

    Returns per model the median throughput over rounds and its range, the ratio to the baseline per
    round (median, min, max), the model's GFLOP/s and that rate as a fraction of the machine's ceiling in the
    model's precision (:func:`conv_ceiling_gflops`, measured in the same run; none for int8), and the CPU.
    """
    from ..utils.progress import progress_bar
    device = torch.device(cfg.device)
    prepared = {name: _prepare(name, cfg, 'infer') for name in models}
    for step, _, _ in prepared.values():
        _timed(step, cfg.warmup, 0, device)
    per_round: Dict[str, List[float]] = {name: [] for name in models}
    for _ in progress_bar(range(rounds), desc='rounds', disable=not progress):
        for name, (step, batch, _) in prepared.items():
            per_round[name].append(batch / statistics.median(_timed(step, 0, cfg.iters, device)))
    ceilings = {p: conv_ceiling_gflops(cfg.device, p) for p in ('float32', 'bfloat16')}
    machine = describe_cpu() if device.type == 'cpu' else torch.cuda.get_device_name(device)
    rows = []
    for name, (_, _, facts) in prepared.items():
        rates, base = per_round[name], per_round.get(models[name])
        precision = _precision_of(split_variants(name)[1])
        ceiling = ceilings.get(precision)
        row = dict(facts, baseline=models[name], rounds=rounds, machine=machine, precision=precision,
                   ceiling_gflops=ceiling,
                   infer_images_per_s=statistics.median(rates), infer_images_per_s_min=min(rates),
                   infer_images_per_s_max=max(rates))
        row['infer_gflops'] = 2 * facts['gmacs'] * row['infer_images_per_s']
        row['ceiling_fraction'] = row['infer_gflops'] / ceiling if ceiling else None
        if base is not None:
            ratios = [r / b for r, b in zip(rates, base)]
            row.update(infer_speedup=statistics.median(ratios), infer_speedup_min=min(ratios),
                       infer_speedup_max=max(ratios))
        rows.append(row)
    return rows


def _run_worker(name: str, cfg: BenchConfig, mode: str, env: Dict[str, str]) -> Dict[str, Any]:
    cmd = [sys.executable, '-m', 'hardnet_backbones.benchmark.worker', '--worker', name, mode, json.dumps(asdict(cfg))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:  # the worker's last line says what failed; its traceback is for debugging
        _logger.debug('benchmark worker of %s (%s):\n%s', name, mode, proc.stderr)
        last = next((line for line in reversed(proc.stderr.splitlines()) if line.strip()), 'no message')
        raise RuntimeError(f'benchmark of {name} ({mode}) failed: {last.strip()} (exit code {proc.returncode}; '
                           f'run with --no-isolate to see the traceback)')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _measure_in_subprocess(name: str, cfg: BenchConfig, mode: str) -> Dict[str, Any]:
    """Timing in one fresh process; on CPU, memory in a second one.

    The memory process has glibc serve large blocks straight from mmap and return them on free, so
    that its peak RSS follows the live tensors rather than the heap's high-water mark (reproducible
    to the MB). That slows allocation down, hence the separate, short timing-free run.
    """
    result = _run_worker(name, cfg, mode, dict(os.environ))
    if not cfg.device.startswith('cuda'):
        memory_cfg = BenchConfig(**{**asdict(cfg), 'warmup': 1, 'iters': 1})
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536', MALLOC_TRIM_THRESHOLD_='0')
        memory = _run_worker(name, memory_cfg, mode, env)
        for key in (f'{mode}_peak_mem_mb', f'{mode}_step_mem_mb'):
            result[key] = memory[key]
    return result


def run_benchmark(
        models: Dict[str, str],
        cfg: BenchConfig,
        isolate: bool = True,
        progress: bool = True,
) -> List[Dict[str, Any]]:
    """Measure every model (each in a fresh subprocess when ``isolate``) and add ratios to its baseline.

    Args:
        models: model name -> baseline name (a model can be its own baseline).
        cfg: the setting shared by all models.
    Returns: one dict per model with ``*_images_per_s``, latencies, ``*_peak_mem_mb``, ``params_m``,
        ``gmacs`` and ``speedup`` / ``params_ratio`` / ``memory_ratio`` against the baseline.
    """
    from ..utils.progress import progress_bar
    jobs = [(name, mode) for name in models for mode in modes_for(name, cfg.train)]
    rows: Dict[str, Dict[str, Any]] = {}
    for name, mode in progress_bar(jobs, desc='benchmark', disable=not progress):
        measure = _measure_in_subprocess if isolate else measure_model
        rows.setdefault(name, dict(baseline=models[name])).update(measure(name, cfg, mode))
    for row in rows.values():
        base = rows.get(row['baseline'])
        if base is None:
            continue
        row['infer_speedup'] = row['infer_images_per_s'] / base['infer_images_per_s']
        row['params_ratio'] = row['params_m'] / base['params_m']
        row['infer_memory_ratio'] = row['infer_peak_mem_mb'] / base['infer_peak_mem_mb']
        if 'train_images_per_s' in row and 'train_images_per_s' in base:
            row['train_speedup'] = row['train_images_per_s'] / base['train_images_per_s']
            row['train_memory_ratio'] = row['train_peak_mem_mb'] / base['train_peak_mem_mb']
            if base.get('train_step_mem_mb'):
                row['train_step_memory_ratio'] = row['train_step_mem_mb'] / base['train_step_mem_mb']
    return list(rows.values())
