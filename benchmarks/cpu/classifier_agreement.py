"""A classifier's top-1 agreement with its float32 self per precision: the float32 deployed form, bfloat16 and int8
(onnxruntime, calibrated on 32 training images).

Two kinds of trained classifier:

* ``--pretrained MODEL --images FOLDER``: the published ImageNet weights of a timm model (downloaded once), on your
  photos. No labels needed: agreement compares each form's top-1 class with the float32 model's.
* otherwise: HarDNet-68 trained here from scratch (8 epochs, AdamW, cosine) to tell the generated shapes apart, on
  crops around the boxes of ``data/shapes`` (64 px), measured on the validation crops, with accuracy beside
  agreement since their labels are known.

bfloat16 is applied with ``with_autocast`` directly, so it also runs (emulated, slowly) on CPUs without AVX512_BF16 /
AMX, where ``optimize_for_inference`` refuses it: the numbers are the same, the speed is not.
Writes ``classifier_agreement.json`` next to this file.

Usage: python benchmarks/cpu/classifier_agreement.py [--pretrained hardnet68 --images photos/]
"""
import argparse
import json
import math
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import normalize, to_tensor

from hardnet_backbones.data.image_io import read_image
from hardnet_backbones.deploy import calibration_images, optimize_for_inference
from hardnet_backbones.deploy.fuse import fuse_for_inference
from hardnet_backbones.deploy.precision import with_autocast
from hardnet_backbones.inference.batching import expand_image_paths
from hardnet_backbones.utils.cpu import describe_cpu
from hardnet_backbones.utils.files import write_text_atomic

CROP_PX = 64
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def shape_crops(root: Path, split: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Normalised crops around every shape of at least 8 px (15 % margin) and their class indices."""
    coco = json.loads((root / 'annotations' / f'{split}.json').read_text())
    files = {image['id']: image['file_name'] for image in coco['images']}
    classes = sorted(c['id'] for c in coco['categories'])
    crops, labels, images = [], [], {}
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        if max(w, h) < 8:
            continue
        pad = 0.15 * max(w, h)
        if ann['image_id'] not in images:  # each image decoded once, however many shapes it holds
            images[ann['image_id']] = read_image(root / 'images' / split / files[ann['image_id']])
        image = images[ann['image_id']]
        crop = image.crop((round(x - pad), round(y - pad), round(x + w + pad), round(y + h + pad)))
        crops.append(normalize(to_tensor(crop.resize((CROP_PX, CROP_PX), Image.BILINEAR)), MEAN, STD))
        labels.append(classes.index(ann['category_id']))
    return torch.stack(crops), torch.tensor(labels)


def train_shapes_classifier(crops: torch.Tensor, labels: torch.Tensor, epochs: int = 8) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model('hardnet68', num_classes=int(labels.max()) + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * math.ceil(len(crops) / 32)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(crops))
        for start in range(0, len(crops), 32):
            index = order[start:start + 32]
            batch = torch.where(torch.rand(len(index), 1, 1, 1) < 0.5, crops[index].flip(-1), crops[index])
            loss = F.cross_entropy(model(batch), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        print(f'epoch {epoch + 1}: loss {loss.item():.3f}', flush=True)
    return model.eval()


def predict(model: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(inputs[i:i + 64]).argmax(1) for i in range(0, len(inputs), 64)])


def forms(model: torch.nn.Module, calibration: List[torch.Tensor], size: Tuple[int, int]) -> Dict[str, Callable]:
    return {
        'float32 (optimize_for_inference)': optimize_for_inference(model, 'classification'),
        'bfloat16 (autocast, float32 outputs)': with_autocast(fuse_for_inference(model, channels_last=True),
                                                              'classification', 'bfloat16'),
        'int8 (onnxruntime)': optimize_for_inference(model, 'classification', precision='int8',
                                                     calibration=calibration, image_size=size),
    }


def measure(model: torch.nn.Module, inputs: torch.Tensor, calibration: List[torch.Tensor],
            labels: Optional[torch.Tensor]) -> Dict[str, Dict[str, float]]:
    """Per form: top-1 agreement with the float32 model as trained, and top-1 accuracy where labels are known."""
    every_form = {'float32 (as trained)': model, **forms(model, calibration, tuple(inputs.shape[-2:]))}
    predictions = {name: predict(form, inputs) for name, form in every_form.items()}
    results = {}
    for name, predicted in predictions.items():
        results[name] = dict(agreement=(predicted == predictions['float32 (as trained)']).float().mean().item())
        if labels is not None:
            results[name]['top1'] = (predicted == labels).float().mean().item()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--pretrained', metavar='MODEL', help='timm model whose published weights to measure')
    parser.add_argument('--images', help='with --pretrained: a folder of photos')
    parser.add_argument('--shapes', default='data/shapes', help='the generated shapes set (default: %(default)s)')
    args = parser.parse_args()
    if args.pretrained:
        model = timm.create_model(args.pretrained, pretrained=True).eval()
        paths = expand_image_paths([args.images])
        inputs = torch.stack(calibration_images(paths, 'classification', model, count=len(paths)))
        report_key, labels = f'{args.pretrained} (published weights) on {args.images}', None
        calibration = list(inputs[:32])
    else:
        train_crops, train_labels = shape_crops(Path(args.shapes), 'train')
        inputs, labels = shape_crops(Path(args.shapes), 'val')
        model = train_shapes_classifier(train_crops, train_labels)
        report_key = f'hardnet68 trained on {args.shapes} crops ({len(inputs)} validation crops)'
        calibration = list(train_crops[::max(1, len(train_crops) // 32)][:32])
    results = measure(model, inputs, calibration, labels)
    print(json.dumps(results, indent=2))
    path = Path(__file__).with_name('classifier_agreement.json')
    report = json.loads(path.read_text()) if path.exists() else {}
    report[report_key] = dict(machine=describe_cpu(), results=results)
    write_text_atomic(path, json.dumps(report, indent=2))


if __name__ == '__main__':
    main()
