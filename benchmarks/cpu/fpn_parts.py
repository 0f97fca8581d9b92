"""Where Faster R-CNN's CPU time goes, per part, HarDNet-39DS FPN vs torchvision's MobileNetV3-Large FPN.

Run: python benchmarks/cpu/fpn_parts.py  (writes benchmarks/cpu/fpn_parts.md). Random weights, one 480x640 image
(resized by the models to 800x1066), the parts timed in turn for ROUNDS interleaved rounds; median ms per part.
"""
import statistics
import time
from pathlib import Path

import torch

from hardnet_backbones.benchmark import build_benchmark_model, count_gmacs

ROUNDS, ITERS = 5, 2
MODELS = ['torchvision:fasterrcnn_mobilenet_v3_large_fpn', 'fasterrcnn_hardnet39ds_fpn']


def parts(model, image):
    """Callables for each stage, fed with the previous stage's real outputs."""
    images, _ = model.transform([image])
    body_out = model.backbone.body(images.tensors)
    if isinstance(body_out, list):
        body_out = {str(i): m for i, m in enumerate(body_out)}
    features = model.backbone.fpn(body_out)
    proposals, _ = model.rpn(images, features)
    return {
        'transform (resize, normalise)': lambda: model.transform([image]),
        'backbone body': lambda: model.backbone.body(images.tensors),
        'feature pyramid': lambda: model.backbone.fpn(body_out),
        'RPN': lambda: model.rpn(images, features),
        'RoI heads': lambda: model.roi_heads(features, proposals, images.image_sizes),
    }


def main():
    torch.manual_seed(0)
    image = torch.rand(3, 480, 640)
    models = {n: build_benchmark_model(n).eval() for n in MODELS}  # random weights, 91 classes
    steps = {}
    with torch.inference_mode():
        for name, model in models.items():
            steps[name] = parts(model, image)
        times = {(n, p): [] for n in MODELS for p in steps[n]}
        for _ in range(ROUNDS):
            for name in MODELS:
                for part, step in steps[name].items():
                    start = time.perf_counter()
                    for _ in range(ITERS):
                        step()
                    times[(name, part)].append((time.perf_counter() - start) / ITERS * 1000)
    body_gmacs = {n: count_gmacs(models[n].backbone.body, 'classification', (800, 1066)) for n in MODELS}
    lines = [f'*one 480x640 image resized to 800x1066, random weights, median of {ROUNDS} interleaved rounds of '
             f'{ITERS}; {torch.get_num_threads()} threads*', '',
             '| part | ' + ' | '.join(f'{n} (ms)' for n in MODELS) + ' |', '|---|' + '---:|' * len(MODELS)]
    for part in steps[MODELS[0]]:
        lines.append(f'| {part} | ' + ' | '.join(f'{statistics.median(times[(n, part)]):.0f}' for n in MODELS) + ' |')
    lines.append('| backbone body GMACs (800x1066) | ' + ' | '.join(f'{body_gmacs[n]:.2f}' for n in MODELS) + ' |')
    text = '\n'.join(lines) + '\n'
    Path(__file__).with_suffix('.md').write_text(text)
    print(text)


if __name__ == '__main__':
    main()
