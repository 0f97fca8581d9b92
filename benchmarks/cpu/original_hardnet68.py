"""HarDNet: the original network against our model and ``optimize_for_inference`` in every precision this CPU runs
natively, interleaved in one process, each against the convolution ceiling of its precision.

"Original" is the literal re-implementation of the published network in ``tests/reference_hardnet.py`` (its
state-dict keys are the published ones; our model's outputs equal it). bfloat16 is measured only where the CPU
has AVX512_BF16 or AMX (elsewhere it is emulated and slower). Writes ``original_<model>.md`` here.

Run from the repository root: ``.venv/bin/python benchmarks/cpu/original_hardnet68.py [hardnet68|hardnet39ds]``
"""
import statistics
import sys
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import hardnet_backbones  # noqa: E402,F401  (registers the timm models)
from hardnet_backbones.benchmark.measure import _timed, conv_ceiling_gflops, count_gmacs  # noqa: E402
from hardnet_backbones.deploy import optimize_for_inference  # noqa: E402
from hardnet_backbones.utils.cpu import cpu_supports_bfloat16, describe_cpu  # noqa: E402
from hardnet_backbones.utils.files import write_text_atomic  # noqa: E402
from tests.reference_hardnet import RefHarDNet  # noqa: E402

BATCH, ROUNDS, ITERS = 8, 7, 3
BASELINE = 'original, channels_last'


def _forms(name: str, x: torch.Tensor):
    """form -> (model, its input, precision)."""
    ours = timm.create_model(name).eval()
    calibration = [torch.rand(1, 3, 224, 224) for _ in range(4)]
    channels_last = x.contiguous(memory_format=torch.channels_last)
    forms = {
        'original, NCHW': (RefHarDNet(name).eval(), x, 'float32'),
        BASELINE: (RefHarDNet(name).eval().to(memory_format=torch.channels_last), channels_last, 'float32'),
        'ours as built, NCHW': (ours, x, 'float32'),
        'optimize_for_inference, float32': (optimize_for_inference(ours), x, 'float32'),
        'optimize_for_inference, int8': (optimize_for_inference(ours, precision='int8', calibration=calibration), x,
                                         'int8'),
    }
    if cpu_supports_bfloat16()[0]:
        forms['optimize_for_inference, bfloat16'] = (optimize_for_inference(ours, precision='bfloat16'), x,
                                                     'bfloat16')
    return forms, count_gmacs(ours, 'classification', (224, 224))


def main(name: str = 'hardnet68') -> None:
    torch.manual_seed(0)
    forms, gmacs = _forms(name, torch.rand(BATCH, 3, 224, 224))
    cpu = torch.device('cpu')
    steps = {form: (lambda m=model, i=inputs: m(i)) for form, (model, inputs, _) in forms.items()}
    rates = {form: [] for form in forms}
    with torch.inference_mode():
        for step in steps.values():
            _timed(step, 2, 0, cpu)
        for _ in range(ROUNDS):
            for form, step in steps.items():
                rates[form].append(BATCH / statistics.median(_timed(step, 0, ITERS, cpu)))
    ceilings = {p: conv_ceiling_gflops('cpu', p) for p in ('float32', 'bfloat16')}  # bfloat16: None if emulated
    lines = [f'*{name}, batch {BATCH}, 224x224, {describe_cpu()}, {torch.get_num_threads()} threads; interleaved, '
             f'{ROUNDS} rounds of {ITERS} iterations; convolution ceilings (3x3, channels_last) '
             + ', '.join(f'{p} {c:.0f} GFLOP/s' for p, c in ceilings.items() if c)
             + '; int8 calibrated on 4 random inputs (speed only)*', '',
             '| model | img/s (median) | x original channels_last (median, range) | GFLOP/s | of its ceiling |',
             '|---|---:|---:|---:|---:|']
    for form, values in rates.items():
        ratios = [a / b for a, b in zip(values, rates[BASELINE])]
        gflops = 2 * gmacs * statistics.median(values)
        ceiling = ceilings.get(forms[form][2])
        share = f'{gflops / ceiling:.0%}' if ceiling else '-'
        lines.append(f'| {form} | {statistics.median(values):.1f} | {statistics.median(ratios):.2f} '
                     f'({min(ratios):.2f}-{max(ratios):.2f}) | {gflops:.1f} | {share} |')
    write_text_atomic(Path(__file__).with_name(f'original_{name}.md'), '\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main(*sys.argv[1:2])
