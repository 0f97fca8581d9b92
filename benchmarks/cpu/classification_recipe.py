"""HarDNet-39DS and HarDNet-68 against timm's mobilenetv3_large_100 and resnet50, one recipe, one data set.

Run: python benchmarks/cpu/classification_recipe.py  (writes benchmarks/cpu/classification_recipe.{md,json});
``--speed-only`` measures the speeds again on the runs already trained (on a quiet machine).

Each model trains from scratch (no published weights can be fetched offline) with the shipped CPU recipe
(``configs/classification/shapes_*.yaml``: AdamW, cosine, label smoothing, 64 px crops of the generated shapes)
through ``tools/train.py``; top-1 / top-5 are its best validation epoch. Training and inference speed are then
measured interleaved (every model in turn, ROUNDS rounds), training as forward + backward + optimizer step on a
batch of 32 crops, inference as the trained model (channels_last, eval) on a batch of 32 crops.
"""
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from hardnet_backbones.inference.trained import load_trained_model
from hardnet_backbones.utils.cpu import describe_cpu

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / 'data' / 'shape_crops_bench'
RUNS = ROOT / 'runs' / 'classification_recipe'
CONFIGS = {
    'hardnet39ds': 'configs/classification/shapes_hardnet39ds.yaml',
    'hardnet68': 'configs/classification/shapes_hardnet68.yaml',
    'mobilenetv3_large_100': 'configs/classification/shapes_mobilenetv3_large_100.yaml',
    'resnet50': 'configs/classification/shapes_resnet50.yaml',
}
TRAIN_IMAGES, VAL_IMAGES, EPOCHS = 200, 60, 20  # scene images; each gives several crops
ROUNDS, ITERS, BATCH, SIZE = 7, 3, 32, 64


def run(*args: str) -> None:
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True)


def train_all() -> dict:
    if not DATA.exists():
        run('tools/make_shapes_dataset.py', '--layout', 'classification', '--out', str(DATA),
            '--train', str(TRAIN_IMAGES), '--val', str(VAL_IMAGES), '--seed', '3')
    results = {}
    for name, config in CONFIGS.items():
        out = RUNS / name
        start = time.perf_counter()
        run('tools/train.py', config, '--overwrite', '--output-dir', str(out), '--set', f'data.root={DATA}',
            '--set', f'train.epochs={EPOCHS}', '--set', 'train.save_images=0')
        records = [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]
        best = max((r for r in records if 'top1' in r), key=lambda r: r['top1'])
        results[name] = dict(top1=best['top1'], top5=best['top5'], best_epoch=best['epoch'],
                             train_wall_s=round(time.perf_counter() - start, 1))
    return results


def median_range(values):
    return statistics.median(values), min(values), max(values)


def speeds() -> dict:
    torch.manual_seed(0)
    images = torch.rand(BATCH, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 3, (BATCH,))
    models = {n: load_trained_model(RUNS / n / 'best.pth').model.to(memory_format=torch.channels_last)
              for n in CONFIGS}
    trainers = {}
    for name, model in models.items():
        train_copy = load_trained_model(RUNS / name / 'best.pth').model.to(memory_format=torch.channels_last)
        train_copy.train().requires_grad_(True)
        trainers[name] = (train_copy, torch.optim.AdamW(train_copy.parameters(), lr=1e-4))
    times = {n: {'train': [], 'infer': []} for n in CONFIGS}

    def train_step(model, optimizer):
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    for name in CONFIGS:  # warm-up
        train_step(*trainers[name])
        with torch.inference_mode():
            models[name](images)
    for _ in range(ROUNDS):
        for name in CONFIGS:
            start = time.perf_counter()
            for _ in range(ITERS):
                train_step(*trainers[name])
            times[name]['train'].append(BATCH * ITERS / (time.perf_counter() - start))
            with torch.inference_mode():
                start = time.perf_counter()
                for _ in range(ITERS):
                    models[name](images)
                times[name]['infer'].append(BATCH * ITERS / (time.perf_counter() - start))
    return {n: {k: median_range(v) for k, v in t.items()} for n, t in times.items()}


def markdown(results: dict, speed: dict, cpu: str) -> str:
    lines = [
        '# One recipe, four classifiers: 64 px crops of the generated shapes, from scratch',
        '',
        f'CPU: {cpu}; {torch.get_num_threads()} threads; torch {torch.__version__}. Data: '
        f'`tools/make_shapes_dataset.py --layout classification --train {TRAIN_IMAGES} --val {VAL_IMAGES} --seed 3` '
        f'(3 classes); {EPOCHS} epochs of `configs/classification/shapes_<model>.yaml`; img/s: median (range) of '
        f'{ROUNDS} interleaved rounds, batch {BATCH}, channels_last.',
        '',
        '| model | params (M) | top-1 | top-5 | best epoch | training img/s | inference img/s | training run (s) |',
        '|---|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for name, r in results.items():
        model = load_trained_model(RUNS / name / 'best.pth').model
        params = sum(p.numel() for p in model.parameters()) / 1e6
        (tr, tr_lo, tr_hi), (inf, inf_lo, inf_hi) = speed[name]['train'], speed[name]['infer']
        lines.append(f'| `{name}` | {params:.2f} | {r["top1"]:.1f} | {r["top5"]:.1f} | '
                     f'{r["best_epoch"]} | {tr:.0f} ({tr_lo:.0f}-{tr_hi:.0f}) | {inf:.0f} ({inf_lo:.0f}-{inf_hi:.0f}) '
                     f'| {r["train_wall_s"]:.0f} |')
    return '\n'.join(lines) + '\n'


def main() -> None:
    out = Path(__file__).with_suffix('')
    if '--speed-only' in sys.argv:
        results = json.loads(Path(f'{out}.json').read_text())['results']
    else:
        results = train_all()
    speed = speeds()
    cpu = describe_cpu()
    Path(f'{out}.json').write_text(json.dumps(dict(cpu=cpu, python=platform.python_version(), results=results,
                                                   speed=speed), indent=2))
    Path(f'{out}.md').write_text(markdown(results, speed, cpu))
    print(Path(f'{out}.md').read_text())


if __name__ == '__main__':
    main()
