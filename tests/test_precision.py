"""Precision-aware inference and training: the CPU capability check (mocked both ways), bfloat16 inference with
float32 outputs and float32 post-processing, ``auto``'s choice, bfloat16 training on CPU where supported."""
import pytest
import torch

from hardnet_backbones.cli import train as train_cli
from hardnet_backbones.deploy import optimize_for_inference
from hardnet_backbones.deploy.precision import AutocastModule, choose_precision
from hardnet_backbones.models import create_model
from hardnet_backbones.utils import cpu
from tests.helpers import DETECTION, detection_overrides

ZEN3 = 'fpu sse sse2 avx avx2 fma'
SAPPHIRE_RAPIDS = ZEN3 + ' avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8'


def test_the_capability_check_reads_the_cpu_flags_both_ways(cpu_flags):
    cpu_flags(ZEN3, 'AMD EPYC 7B13')
    assert cpu.cpu_supports_bfloat16()[0] is False
    assert cpu.describe_cpu() == ('AMD EPYC 7B13 (AVX2, FMA; no AVX-512, AVX512_VNNI, AVX_VNNI, AVX512_BF16, '
                                  'AMX_BF16, AMX_INT8)')
    assert choose_precision(torch.device('cpu')) == ('float32', cpu.cpu_supports_bfloat16()[1])
    cpu_flags(SAPPHIRE_RAPIDS)
    assert cpu.cpu_supports_bfloat16() == (True, 'the CPU has AVX512_BF16 and AMX_BF16')
    assert choose_precision(torch.device('cpu'))[0] == 'bfloat16'
    assert choose_precision(torch.device('cpu'), calibration=[torch.zeros(3, 8, 8)])[0] == 'int8'
    assert choose_precision(torch.device('cuda'))[0] == 'float16'


def test_bfloat16_is_refused_where_the_cpu_would_emulate_it(cpu_flags):
    cpu_flags(ZEN3)
    model = create_model('hardnet39ds').eval()
    with pytest.raises(ValueError, match='precision bfloat16: the CPU has neither AVX512_BF16 nor AMX'):
        optimize_for_inference(model, precision='bfloat16')
    with pytest.raises(ValueError, match='float16 is for CUDA'):
        optimize_for_inference(model, precision='float16')
    assert optimize_for_inference(model, precision='auto').precision == 'float32'


@pytest.mark.parametrize('name, kind', [('hardnet39ds', 'classification'), ('lraspp_hardnet39ds', 'segmentation')])
def test_bfloat16_inference_returns_float32_close_to_float32(cpu_flags, name, kind):
    cpu_flags(SAPPHIRE_RAPIDS)  # the autocast runs anywhere (emulated here); the check is what is mocked
    torch.manual_seed(0)
    model = create_model(name, **({'num_classes': 4} if kind == 'segmentation' else {})).eval()
    fast = optimize_for_inference(model, kind, precision='auto')
    assert fast.precision == 'bfloat16'
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = model(x), fast(x)
    if kind == 'segmentation':
        expected, got = expected['out'], got['out']
    assert got.dtype == torch.float32
    assert (got - expected).abs().max() <= 0.05 * expected.abs().max()  # bfloat16 keeps 8 bits of mantissa


def test_detectors_keep_box_decoding_and_nms_in_float32(cpu_flags):
    cpu_flags(SAPPHIRE_RAPIDS)
    model = create_model('fasterrcnn_hardnet39ds_320_fpn', num_classes=3, min_size=64, max_size=64,
                         box_score_thresh=0.0).eval()
    fast = optimize_for_inference(model, 'detection', precision='bfloat16')
    wrapped = {n for n, m in fast.named_modules() if isinstance(m, AutocastModule)}
    assert wrapped == {'backbone', 'rpn.head', 'roi_heads.box_head', 'roi_heads.box_predictor'}
    assert not isinstance(fast.roi_heads, AutocastModule) and not isinstance(fast.transform, AutocastModule)
    with torch.no_grad():
        out = fast([torch.rand(3, 64, 64)])[0]
    assert out['boxes'].dtype == out['scores'].dtype == torch.float32 and len(out['boxes']) > 0


def _bf16_run(data, out):
    return [str(DETECTION), *(f'--set={o}' for o in detection_overrides(data, out, epochs=1, workers=0)),
            '--set=train.amp=true', '--set=train.amp_dtype=bfloat16', '--set=train.device=cpu']


def test_bfloat16_training_is_refused_in_one_line_where_the_cpu_lacks_it(cpu_flags, shapes_root, tmp_path, caplog):
    cpu_flags(ZEN3)
    assert train_cli.main(_bf16_run(shapes_root, tmp_path / 'run')) == 2
    assert 'train.amp_dtype=bfloat16 on this CPU: the CPU has neither AVX512_BF16 nor AMX' in caplog.text
    assert not (tmp_path / 'run').exists()


@pytest.mark.slow
@pytest.mark.parametrize('where', ['mocked', 'this CPU'])
def test_a_bfloat16_training_step_runs_on_cpu(cpu_flags, shapes_root, tmp_path, monkeypatch, where):
    if where == 'mocked':
        cpu_flags(SAPPHIRE_RAPIDS)
    elif not cpu.cpu_supports_bfloat16()[0]:
        pytest.skip(f'{cpu.describe_cpu()}: no native bfloat16')
    seen = []
    original = torch.autocast.__init__

    def spy(self, device_type, dtype=None, *args, **kwargs):
        seen.append((device_type, dtype, kwargs.get('enabled', True)))
        original(self, device_type, dtype, *args, **kwargs)
    monkeypatch.setattr(torch.autocast, '__init__', spy)
    assert train_cli.main(_bf16_run(shapes_root, tmp_path / 'run')) == 0
    assert ('cpu', torch.bfloat16, True) in seen
    metrics = (tmp_path / 'run' / 'metrics.jsonl').read_text()
    assert 'nan' not in metrics.lower()


@pytest.mark.slow
def test_the_benchmark_measures_bfloat16_against_its_own_ceiling(cpu_flags, tmp_path, caplog):
    import json

    from hardnet_backbones.cli import benchmark as benchmark_cli

    args = ['--models', 'hardnet39ds+fused', 'hardnet39ds+bf16', '--batch-size', '1', '--image-size', '64',
            '--warmup', '1', '--iters', '1', '--interleave', '1', '--output', str(tmp_path / 'b')]
    cpu_flags(ZEN3)
    assert benchmark_cli.main(args) == 2
    assert 'precision bfloat16: the CPU has neither AVX512_BF16 nor AMX' in caplog.text
    cpu_flags(SAPPHIRE_RAPIDS, 'Pretend Xeon')
    assert benchmark_cli.main(args) == 0
    report = json.loads((tmp_path / 'b.json').read_text())
    rows = {r['model']: r for r in report['results']}
    assert rows['hardnet39ds+bf16']['precision'] == 'bfloat16' and rows['hardnet39ds+bf16']['ceiling_gflops'] > 0
    assert rows['hardnet39ds+fused']['ceiling_gflops'] != rows['hardnet39ds+bf16']['ceiling_gflops']
    assert report['machine']['cpu'].startswith('Pretend Xeon (AVX2, FMA, AVX-512, AVX512_VNNI, AVX512_BF16')


def test_the_tools_take_a_precision(cpu_flags, runs, tmp_path, caplog):
    import json

    from hardnet_backbones.cli import detect as detect_cli
    from hardnet_backbones.cli import evaluate as evaluate_cli

    image = next((runs['data'] / 'images' / 'val').glob('*.png'))
    detect = ['--checkpoint', str(runs['det']), '--out-dir', str(tmp_path / 'det'), str(image)]
    cpu_flags(ZEN3)
    assert detect_cli.main(detect + ['--precision', 'bfloat16']) == 2
    assert '--precision bfloat16: the CPU has neither AVX512_BF16 nor AMX' in caplog.text
    assert evaluate_cli.main(['--checkpoint', str(runs['seg']), '--precision', 'auto',
                              '--output', str(tmp_path / 'f32.json')]) == 0
    assert json.loads((tmp_path / 'f32.json').read_text())['precision'] == 'float32'
    cpu_flags(SAPPHIRE_RAPIDS)
    assert detect_cli.main(detect + ['--precision', 'bfloat16']) == 0
    assert evaluate_cli.main(['--checkpoint', str(runs['seg']), '--precision', 'auto',
                              '--output', str(tmp_path / 'bf16.json')]) == 0
    bf16, f32 = (json.loads((tmp_path / f).read_text()) for f in ('bf16.json', 'f32.json'))
    assert bf16['precision'] == 'bfloat16'
    assert abs(bf16['metrics']['mIoU'] - f32['metrics']['mIoU']) <= 0.02  # a tiny model, two images
