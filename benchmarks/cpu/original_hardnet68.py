"""hardnet68: the original network against our model and ``optimize_for_inference``, interleaved in one process.

"Original" is the literal re-implementation of the published network in ``tests/reference_hardnet.py`` (its
state-dict keys are the published ones; our model's outputs equal it). Writes ``original_hardnet68.md`` here.

Run from the repository root: ``.venv/bin/python benchmarks/cpu/original_hardnet68.py``
"""
import statistics
import sys
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import hardnet_backbones  # noqa: E402,F401  (registers the timm models)
from hardnet_backbones.benchmark import _timed, gemm_gflops  # noqa: E402
from hardnet_backbones.deploy import optimize_for_inference  # noqa: E402
from tests.reference_hardnet import RefHarDNet  # noqa: E402

BATCH, ROUNDS, ITERS, GMACS = 8, 7, 3, 4.25
BASELINE = 'original, channels_last'


def main() -> None:
    torch.manual_seed(0)
    x = torch.rand(BATCH, 3, 224, 224)
    ours = timm.create_model('hardnet68').eval()
    calibration = [torch.rand(1, 3, 224, 224) for _ in range(4)]
    runs = {
        'original, NCHW': (RefHarDNet('hardnet68').eval(), x),
        BASELINE: (RefHarDNet('hardnet68').eval().to(memory_format=torch.channels_last),
                   x.contiguous(memory_format=torch.channels_last)),
        'ours as built, NCHW': (ours, x),
        'optimize_for_inference, float32': (optimize_for_inference(ours), x),
        'optimize_for_inference, int8': (optimize_for_inference(ours, int8=True, calibration=calibration), x),
    }
    cpu = torch.device('cpu')
    steps = {name: (lambda m=model, i=inputs: m(i)) for name, (model, inputs) in runs.items()}
    rates = {name: [] for name in runs}
    with torch.inference_mode():
        for step in steps.values():
            _timed(step, 2, 0, cpu)
        for _ in range(ROUNDS):
            for name, step in steps.items():
                rates[name].append(BATCH / statistics.median(_timed(step, 0, ITERS, cpu)))
    gemm = gemm_gflops()
    threads = torch.get_num_threads()
    lines = [f'*hardnet68, batch {BATCH}, 224x224, CPU, {threads} threads; interleaved, {ROUNDS} rounds '
             f'of {ITERS} iterations; machine float32 GEMM rate {gemm:.1f} GFLOP/s; int8 calibrated on 4 random '
             f'inputs (speed only)*', '',
             '| model | img/s (median) | x original channels_last (median, range) | GFLOP/s | of GEMM rate |',
             '|---|---:|---:|---:|---:|']
    for name, values in rates.items():
        ratios = [a / b for a, b in zip(values, rates[BASELINE])]
        gflops = 2 * GMACS * statistics.median(values)
        lines.append(f'| {name} | {statistics.median(values):.1f} | {statistics.median(ratios):.2f} '
                     f'({min(ratios):.2f}-{max(ratios):.2f}) | {gflops:.1f} | {gflops / gemm:.0%} |')
    (Path(__file__).parent / 'original_hardnet68.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
