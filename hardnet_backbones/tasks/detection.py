"""SSD detection on COCO-format or Pascal VOC data."""
from typing import Any, Dict, Tuple

import torch
from torch.utils.data import DataLoader

from ..data.detection import VOC_CLASSES, CocoDetectionDataset, VOCDetectionDataset, collate_detection
from ..data.transforms import detection_train_transform
from ..detection import create_detection_model, detection_input_size
from ..engine.config import ConfigError
from ..engine.distributed import DistInfo
from ..evaluation.detection import evaluate_detection
from ..visualize import draw_detections
from . import Task, data_roots


class DetectionTask(Task):
    main_metric = 'mAP'

    def _dataset(self, split: str, ann: str, train: bool):
        data = self.cfg.data
        roots = data_roots(data, train)
        if len(roots) > 1 and data.format != 'voc':
            raise ConfigError(f'data.root: a list of roots is for the voc format, not {data.format}')
        root = roots[0]
        transform = None
        if train:
            transform = detection_train_transform(
                self.cfg.model.kwargs.get('size', detection_input_size(self.cfg.model.name)),
                photometric_p=data.photometric_p,
                zoom_out_max=data.zoom_out_max, zoom_out_p=data.zoom_out_p, iou_crop=data.iou_crop,
                hflip_p=data.hflip_p)
        if data.format == 'coco':
            if data.class_names is not None:
                raise ConfigError('data.class_names: COCO data takes its class names from "categories"; remove the key')
            return CocoDetectionDataset(root / data.images_dir / split, root / (ann or f'annotations/{split}.json'),
                                        transform, exif_orientation=data.exif_orientation)
        if data.format == 'voc':
            return VOCDetectionDataset(roots, split, transform, class_names=data.class_names or VOC_CLASSES,
                                       exif_orientation=data.exif_orientation)
        raise ConfigError(f'data.format: {data.format!r} is not a detection format (coco, voc)')

    def build_datasets(self):
        data = self.cfg.data
        return (self._dataset(data.train_split, data.train_ann, train=True),
                self._dataset(data.val_split, data.val_ann, train=False))

    def build_model(self, train_set) -> torch.nn.Module:
        m = self.cfg.model
        kwargs = dict(m.kwargs)
        if m.trainable_backbone_layers is not None:
            kwargs['trainable_backbone_layers'] = m.trainable_backbone_layers
        return create_detection_model(
            m.name, num_classes=m.num_classes or train_set.num_classes, weights_backbone=m.weights_backbone, **kwargs)

    def collate(self, batch):
        return collate_detection(batch)

    def loss(self, model, batch, device) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        images, targets = batch
        images = [img.to(device, non_blocking=True) for img in images]
        targets = [dict(boxes=t['boxes'].to(device), labels=t['labels'].to(device)) for t in targets]
        parts = model(images, targets)
        return sum(parts.values()), parts

    def evaluate(self, model, val_set, loader: DataLoader, dist_info: DistInfo) -> Dict[str, Any]:
        return evaluate_detection(model, loader, val_set.coco, val_set.label_to_cat_id, dist_info)

    def draw(self, model, val_set, index, device):
        image, target = val_set[index]
        pred = model([image.to(device)])[0]
        picture = draw_detections(image, pred['boxes'], pred['labels'], pred['scores'], val_set.class_names)
        return picture, f'detections_{target["image_id"]}.png'
