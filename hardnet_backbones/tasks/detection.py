"""Detection (SSD, the FPN detectors) on COCO-format or Pascal VOC data; instance segmentation (Mask R-CNN) on COCO
data with masks."""
import json
import logging
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch.utils.data import DataLoader

from ..data.centernet_transforms import CenterNetTrainTransform
from ..data.detection import VOC_CLASSES, CocoDetectionDataset, VOCDetectionDataset, collate_detection
from ..data.transforms import detection_train_transform
from ..engine.task import register_task
from ..errors import ConfigError, DataError
from ..evaluation.detection import evaluate_detection
from ..utils.distributed import DistInfo
from ..utils.files import write_text_atomic
from ..visualization.draw import draw_detections
from .builtin import BuiltInTask, data_roots, detection_input_size, is_centernet, predicts_masks, resizes_to_one_size

_logger = logging.getLogger(__name__)


class DetectionTask(BuiltInTask):
    main_metric = 'mAP'

    def build_dataset(self, split: str, train: bool):
        dataset = self._read_dataset(split, train)
        if train and not any(record['boxes'] for record in dataset.records):
            raise DataError(f'the {split} split ({data_roots(self.cfg.data, train)[0]}) has no object to learn from: '
                            f'no annotation with a box inside its image (crowd and difficult ones do not count); '
                            f'check data.train_split / data.train_ann')
        return dataset

    def _read_dataset(self, split: str, train: bool):
        data = self.cfg.data
        roots = data_roots(data, train)
        if len(roots) > 1 and data.format != 'voc':
            raise ConfigError(f'data.root: a list of roots is for the voc format, not {data.format}')
        transform = self._train_transform() if train else None
        if data.format == 'coco':
            if data.class_names is not None:
                raise ConfigError('data.class_names: COCO data takes its class names from "categories"; remove the key')
            ann = data.train_ann if train else data.val_ann
            root = roots[0]
            return CocoDetectionDataset(root / data.images_dir / split, root / (ann or f'annotations/{split}.json'),
                                        transform, exif_orientation=data.exif_orientation,
                                        masks=predicts_masks(self.cfg))
        if data.format == 'voc':
            if predicts_masks(self.cfg):
                raise ConfigError(f'model.name: {self.cfg.model.name} learns instance masks, and VOC XML files hold '
                                  f'boxes only; use COCO json with "segmentation" (data.format=coco)')
            return VOCDetectionDataset(roots, split, transform, class_names=data.class_names or VOC_CLASSES,
                                       exif_orientation=data.exif_orientation)
        raise ConfigError(f'data.format: {data.format!r} is not a detection format (coco, voc)')

    def _train_transform(self):
        data = self.cfg.data
        augmentation = data.augmentation
        if augmentation == 'auto':
            augmentation = 'centernet' if is_centernet(self.cfg) else 'ssd'
        if augmentation == 'centernet':
            if predicts_masks(self.cfg):
                raise ConfigError(f'data.augmentation: centernet moves boxes only, and {self.cfg.model.name} learns '
                                  f'instance masks; use data.augmentation=ssd')
            size = detection_input_size(self.cfg)
            if size is None:
                raise ConfigError(f'data.augmentation: centernet fills a square canvas, and {self.cfg.model.name} '
                                  f'has no square input size; use data.augmentation=ssd')
            return CenterNetTrainTransform(size, hflip_p=data.hflip_p, color_p=data.photometric_p)
        return detection_train_transform(
            detection_input_size(self.cfg), photometric_p=data.photometric_p, zoom_out_max=data.zoom_out_max,
            zoom_out_p=data.zoom_out_p, iou_crop=data.iou_crop, hflip_p=data.hflip_p)

    def val_batch_size(self, requested: Optional[int] = None) -> int:
        """One image per batch for the detectors that pad a batch to its largest image (R-CNN, RetinaNet, FCOS):
        their outputs change with that padding, and a metric must not depend on the batch size (torchvision's
        references evaluate them so too). SSDs resize every image to one square size, so any batch is exact."""
        if resizes_to_one_size(self.cfg):
            return super().val_batch_size(requested)
        if requested and requested > 1:
            _logger.info('%s is evaluated one image per batch: its outputs depend on how a batch is padded '
                         '(--batch-size %d not used)', self.cfg.model.name, requested)
        return 1

    def collate(self, batch):
        return collate_detection(batch)

    def loss(self, model, batch, device) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        images, targets = batch
        images = [img.to(device, non_blocking=True) for img in images]
        targets = [{k: t[k].to(device) for k in ('boxes', 'labels', 'masks') if k in t} for t in targets]
        parts = model(images, targets)
        return sum(parts.values()), parts

    def evaluate(self, model, val_set, loader: DataLoader, dist_info: DistInfo,
                 predictions_dir: Optional[Union[str, Path]] = None) -> Dict[str, Any]:
        metrics, results = evaluate_detection(model, loader, val_set.coco, val_set.label_to_cat_id, dist_info)
        if predictions_dir is not None and dist_info.is_main:
            Path(predictions_dir).mkdir(parents=True, exist_ok=True)
            write_text_atomic(Path(predictions_dir) / 'detections_coco.json', json.dumps(results))
        return metrics

    def draw(self, model, val_set, index, device):
        image, target = val_set[index]
        pred = model([image.to(device)])[0]
        picture = draw_detections(image, pred['boxes'], pred['labels'], pred['scores'], val_set.class_names,
                                  masks=pred.get('masks'))
        return picture, f'detections_{target["image_id"]}.png'


register_task('detection', DetectionTask)
