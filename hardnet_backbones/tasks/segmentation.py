"""Semantic segmentation (FCN / DeepLabV3 / LR-ASPP) on VOC, Cityscapes, folder or shapes data."""
from typing import Any, Dict, Tuple

import torch
from PIL import Image
from torch.utils.data import DataLoader

from ..data.segmentation import cityscapes_segmentation, folder_segmentation, voc_segmentation
from ..data.shapes import SHAPE_CLASSES
from ..data.transforms import segmentation_eval_transform, segmentation_train_transform
from ..engine.config import ConfigError
from ..engine.distributed import DistInfo
from ..evaluation.segmentation import evaluate_segmentation
from ..losses import SegmentationLoss
from ..segmentation import create_segmentation_model
from ..visualize import overlay_segmentation
from . import Task

# ImageNet statistics: every backbone here was (or will be) pre-trained with them
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class SegmentationTask(Task):
    main_metric = 'mIoU'

    def __init__(self, cfg):
        super().__init__(cfg)
        loss = cfg.loss
        self.criterion = SegmentationLoss(loss.name, cfg.data.ignore_index, loss.aux_weight,
                                          loss.bootstrap_min_k, loss.bootstrap_threshold)

    def _dataset(self, split: str, train: bool):
        data = self.cfg.data
        if train:
            transform = segmentation_train_transform(
                data.crop_size, _MEAN, _STD, data.scale_range, data.ignore_index, data.hflip_p, data.color_jitter_p)
        else:
            transform = segmentation_eval_transform(_MEAN, _STD)
        if data.format == 'voc':
            return voc_segmentation(data.root, split, transform)
        if data.format == 'cityscapes':
            return cityscapes_segmentation(data.root, split, transform)
        if data.format == 'shapes':
            return folder_segmentation(data.root, split, ('background',) + SHAPE_CLASSES, transform, data.ignore_index)
        if data.format == 'folder':
            if not self.cfg.model.num_classes:
                raise ConfigError('data.format=folder needs model.num_classes')
            names = [f'class_{i}' for i in range(self.cfg.model.num_classes)]
            return folder_segmentation(data.root, split, names, transform, data.ignore_index)
        raise ConfigError(
            f'data.format: {data.format!r} is not a segmentation format (voc, cityscapes, folder, shapes)')

    def build_datasets(self):
        data = self.cfg.data
        return self._dataset(data.train_split, train=True), self._dataset(data.val_split, train=False)

    def build_model(self, train_set) -> torch.nn.Module:
        m = self.cfg.model
        kwargs: Dict[str, Any] = dict(m.kwargs)
        if m.aux_loss is not None:
            kwargs['aux_loss'] = m.aux_loss
        return create_segmentation_model(
            m.name, num_classes=m.num_classes or train_set.num_classes, weights_backbone=m.weights_backbone, **kwargs)

    def collate(self, batch):
        images, masks = zip(*batch)
        return torch.stack(images), torch.stack(masks)

    def loss(self, model, batch, device) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        images, masks = batch
        outputs = model(images.to(device, non_blocking=True))
        return self.criterion(outputs, masks.to(device, non_blocking=True))

    def val_batch_size(self) -> int:
        return 1  # full-resolution validation images may differ in size

    def evaluate(self, model, val_set, loader: DataLoader, dist_info: DistInfo) -> Dict[str, Any]:
        return evaluate_segmentation(model, loader, val_set.num_classes, val_set.class_names, dist_info,
                                     self.cfg.data.ignore_index)

    def draw(self, model, val_set, index, device):
        image, mask = val_set[index]
        pred = model(image[None].to(device))['out'].argmax(1)[0].cpu()
        raw = val_set.load_image(index)
        prediction = overlay_segmentation(raw, pred, val_set.num_classes)
        truth = overlay_segmentation(raw, mask, val_set.num_classes)
        return _side_by_side([raw, truth, prediction]), f'overlay_{index:04d}.png'


def _side_by_side(pictures) -> Image.Image:
    """Image | ground truth | prediction, left to right."""
    pictures = [p if isinstance(p, Image.Image) else Image.fromarray(p) for p in pictures]
    width = sum(p.width for p in pictures)
    canvas = Image.new('RGB', (width, max(p.height for p in pictures)))
    x = 0
    for p in pictures:
        canvas.paste(p, (x, 0))
        x += p.width
    return canvas
