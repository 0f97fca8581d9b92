"""Image classification (timm classifiers: the HarDNet variants or any timm model) on folder or CSV data, with
timm's recipe: its transforms from the model's pretrained config, Mixup / CutMix, label smoothing, soft-target and
binary cross-entropy; fine-tuning from published weights with a new head."""
import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from timm.data import Mixup, create_transform, resolve_data_config
from timm.data.mixup import mixup_target
from timm.loss import BinaryCrossEntropy, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.models import get_pretrained_cfg
from torch.utils.data import DataLoader

from ..data.classification import csv_classification, folder_classification
from ..engine.task import register_task
from ..errors import ConfigError, DataError
from ..evaluation.classification import evaluate_classification
from ..utils.distributed import DistInfo, all_gather_objects
from ..utils.files import write_atomic, write_text_atomic
from ..visualization.draw import draw_classification
from ..visualization.plots import plot_confusion
from .builtin import BuiltInTask, data_roots, model_entry

__all__ = ['ClassificationTask', 'classifier_data_config']


def classifier_data_config(cfg) -> Dict[str, Any]:
    """timm's data config of ``model.name`` (input size, crop_pct, interpolation, mean, std), with
    ``data.input_size`` applied."""
    pretrained = get_pretrained_cfg(cfg.model.name)
    config = resolve_data_config({}, pretrained_cfg=pretrained.to_dict() if pretrained else {})
    if cfg.data.input_size is not None:
        config['input_size'] = (3, cfg.data.input_size, cfg.data.input_size)
    return config


class ClassificationTask(BuiltInTask):
    main_metric = 'top1'

    def __init__(self, cfg):
        super().__init__(cfg)
        self.last_metrics: Dict[str, Any] = {}
        self._mixup: Optional[Mixup] = None

    def check_config(self) -> None:
        super().check_config()
        cfg = self.cfg
        if model_entry(cfg).source == 'torchvision':
            raise ConfigError(f'model.name: {cfg.model.name}: classification trains timm models; use timm\'s name '
                              f'(e.g. resnet50, mobilenetv3_large_100)')
        if cfg.data.format not in ('folder', 'csv'):
            raise ConfigError(f'data.format: {cfg.data.format!r} is not a classification format (folder, csv)')
        if cfg.loss.name not in ('cross_entropy', 'bce'):
            raise ConfigError(f'loss.name: {cfg.loss.name!r} is not a classification loss (cross_entropy, bce)')
        if (cfg.data.mixup or cfg.data.cutmix) and cfg.train.batch_size % 2:
            raise ConfigError(f'train.batch_size={cfg.train.batch_size}: Mixup / CutMix pair the images of a batch, '
                              f'so it must be even')

    def build_dataset(self, split: str, train: bool):
        data = self.cfg.data
        config = classifier_data_config(self.cfg)
        transform = create_transform(
            **config, is_training=train, auto_augment=data.auto_augment if train else None,
            re_prob=data.reprob if train else 0.0, hflip=data.hflip_p)
        root = data_roots(data, train)[0]
        common = dict(class_names=data.class_names, transform=transform, exif_orientation=data.exif_orientation,
                      seed=self.cfg.train.seed)
        if data.format == 'csv':
            listed = (data.train_csv if train else data.val_csv) or f'{split}.csv'
            return csv_classification(root / listed, root, **common)
        return folder_classification(root, split, **common)

    def build_datasets(self):
        train_set, val_set = super().build_datasets()
        if train_set.class_names != val_set.class_names:
            only_train = sorted(set(train_set.class_names) - set(val_set.class_names))
            only_val = sorted(set(val_set.class_names) - set(train_set.class_names))
            raise DataError(f'the train and val splits have different classes (only in train: {only_train}; only '
                            f'in val: {only_val}); give both the same class folders, or fix data.class_names')
        return train_set, val_set

    def collate(self, batch):
        images, labels = zip(*batch)
        return torch.stack(images), torch.tensor(labels, dtype=torch.int64)

    def _criterion(self, soft: bool) -> nn.Module:
        smoothing = self.cfg.loss.smoothing
        if self.cfg.loss.name == 'bce':
            return BinaryCrossEntropy(smoothing=0.0 if soft else smoothing)
        if soft:
            return SoftTargetCrossEntropy()
        return LabelSmoothingCrossEntropy(smoothing) if smoothing else nn.CrossEntropyLoss()

    def loss(self, model, batch, device) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        images, labels = batch
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        data = self.cfg.data
        if data.mixup or data.cutmix:
            num_classes = model.module.num_classes if hasattr(model, 'module') else model.num_classes
            if self._mixup is None:
                self._mixup = Mixup(mixup_alpha=data.mixup, cutmix_alpha=data.cutmix,
                                    label_smoothing=self.cfg.loss.smoothing, num_classes=num_classes)
            if len(images) % 2 == 0:
                images, targets = self._mixup(images, labels)
            else:  # a last odd batch: no partner to mix with
                targets = mixup_target(labels, num_classes, 1.0, self.cfg.loss.smoothing)
            loss = self._criterion(soft=True)(model(images), targets)
        else:
            loss = self._criterion(soft=False)(model(images), labels)
        return loss, {'classification': loss}

    def evaluate(self, model, val_set, loader: DataLoader, dist_info: DistInfo,
                 predictions_dir: Optional[Union[str, Path]] = None) -> Dict[str, Any]:
        rows: List[List[Any]] = []

        def keep(index: int, probabilities: torch.Tensor) -> None:
            values, classes = probabilities.topk(min(5, len(probabilities)))
            rows.append([str(val_set.samples[index][0]), val_set.class_names[val_set.samples[index][1]],
                         *[part for v, c in zip(values.tolist(), classes.tolist())
                           for part in (_name(val_set.class_names, c), round(v, 6))]])

        metrics = evaluate_classification(model, loader, val_set.class_names, dist_info,
                                          on_prediction=keep if predictions_dir is not None else None)
        self.last_metrics = metrics
        if predictions_dir is not None:
            rows = [row for part in all_gather_objects(rows) for row in part]
            if dist_info.is_main:
                _write_predictions(Path(predictions_dir), rows)
        return {k: v for k, v in metrics.items() if k != 'confusion'}

    def draw(self, model, val_set, index, device):
        image, label = val_set[index]
        probabilities = model(image[None].to(device)).float().softmax(1)[0].cpu()
        values, classes = probabilities.topk(min(3, len(probabilities)))
        predicted = [(_name(val_set.class_names, c), v) for v, c in zip(values.tolist(), classes.tolist())]
        picture = draw_classification(val_set.load_image(index), val_set.class_names[label], predicted)
        return picture, f'prediction_{index:04d}_{Path(val_set.samples[index][0]).stem}.png'

    def save_visuals(self, model, val_set, out_dir, count: int) -> List[str]:
        """The pictures of :meth:`draw`, and the confusion matrix of the last evaluation (PNG and JSON)."""
        paths = super().save_visuals(model, val_set, out_dir, count)
        confusion = self.last_metrics.get('confusion')
        if confusion is not None:
            out_dir = Path(out_dir)
            write_text_atomic(out_dir / 'confusion_matrix.json', json.dumps(
                dict(class_names=val_set.class_names, rows='true class', columns='predicted class',
                     counts=confusion)))
            write_atomic(out_dir / 'confusion_matrix.png',
                         lambda f: plot_confusion(confusion, val_set.class_names, f))
            paths += [str(out_dir / 'confusion_matrix.json'), str(out_dir / 'confusion_matrix.png')]
        return paths


def _name(class_names: List[str], index: int) -> str:
    return class_names[index] if index < len(class_names) else f'class {index}'


def _write_predictions(folder: Path, rows: List[List[Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text)
    width = max((len(r) for r in rows), default=2)
    writer.writerow(['path', 'true'] + [f'{kind}{i}' for i in range(1, (width - 2) // 2 + 1)
                                        for kind in ('class', 'probability')])
    writer.writerows(sorted(rows))
    write_text_atomic(folder / 'predictions.csv', text.getvalue())


register_task('classification', ClassificationTask)
