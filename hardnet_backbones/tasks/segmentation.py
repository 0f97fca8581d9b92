"""Semantic segmentation (FCN / DeepLabV3 / LR-ASPP / FC-HarDNet) on VOC, Cityscapes, folder or shapes data."""
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import DataLoader

from ..data.palettes import color_palette
from ..data.segmentation import VOC_SEG_CLASSES, cityscapes_segmentation, folder_segmentation, voc_segmentation
from ..data.shapes import SHAPE_CLASSES
from ..data.transforms import segmentation_eval_transform, segmentation_train_transform
from ..engine.task import register_task
from ..errors import ConfigError
from ..evaluation.segmentation import evaluate_segmentation
from ..utils.distributed import DistInfo
from ..utils.files import write_atomic
from ..visualization.draw import mask_to_png, overlay_segmentation
from .builtin import BuiltInTask, data_roots
from .losses import SegmentationLoss

_logger = logging.getLogger(__name__)

# ImageNet statistics: every backbone here was (or will be) pre-trained with them
_MEAN, _STD = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD


class SegmentationTask(BuiltInTask):
    main_metric = 'mIoU'

    def __init__(self, cfg):
        super().__init__(cfg)
        loss = cfg.loss
        self.criterion = SegmentationLoss(loss.name, cfg.data.ignore_index, loss.aux_weight,
                                          loss.bootstrap_min_k, loss.bootstrap_threshold)

    def build_dataset(self, split: str, train: bool):
        data = self.cfg.data
        if train:
            transform = segmentation_train_transform(
                data.crop_size, _MEAN, _STD, data.scale_range, data.ignore_index, data.hflip_p, data.color_jitter_p)
        else:
            transform = segmentation_eval_transform(_MEAN, _STD, data.ignore_index)
        roots = data_roots(data, train)
        if len(roots) > 1:
            raise ConfigError('data.root: a list of roots is only supported for voc detection')
        root = roots[0]
        if data.class_names is not None and data.format not in ('folder', 'voc'):
            raise ConfigError(f'data.class_names: the {data.format} format has its own class list; remove the key')
        if data.mask_values is not None and data.format == 'cityscapes':
            raise ConfigError('data.mask_values: cityscapes masks are mapped by data.cityscapes_labels; remove the key')
        exif = data.exif_orientation
        if data.nonzero_class is not None and data.format not in ('shapes', 'folder'):
            raise ConfigError(f'data.nonzero_class is for the folder format; {data.format} masks are classes already')
        if data.format == 'voc':
            if data.mask_values:
                raise ConfigError('data.mask_values: VOC masks are class indices already; remove the key')
            return voc_segmentation(root, split, transform, exif_orientation=exif, class_names=self.class_names())
        if data.format == 'cityscapes':
            return cityscapes_segmentation(root, split, transform, labels=data.cityscapes_labels,
                                           exif_orientation=exif)
        if data.format in ('shapes', 'folder'):
            return folder_segmentation(root, split, self.class_names(), transform, data.ignore_index,
                                       data.mask_values, exif_orientation=exif, nonzero_class=data.nonzero_class)
        raise ConfigError(
            f'data.format: {data.format!r} is not a segmentation format (voc, cityscapes, folder, shapes)')

    def class_names(self) -> List[str]:
        """Classes of the shapes, VOC and folder formats: shapes' own; ``data.class_names`` (checked against
        ``model.num_classes``); else VOC's 21 classes, or ``class_<i>`` for a folder."""
        data, num_classes = self.cfg.data, self.cfg.model.num_classes
        if data.format == 'shapes':
            return ['background', *SHAPE_CLASSES]
        if data.format == 'voc' and data.class_names is None:
            return list(VOC_SEG_CLASSES)
        if data.class_names is not None:
            if num_classes is not None and num_classes != len(data.class_names):
                raise ConfigError(f'model.num_classes={num_classes} but data.class_names lists '
                                  f'{len(data.class_names)} classes')
            return list(data.class_names)
        if not num_classes:
            raise ConfigError('data.format=folder needs data.class_names (or model.num_classes)')
        return [f'class_{i}' for i in range(num_classes)]

    def collate(self, batch):
        images, masks = zip(*batch)
        return torch.stack(images), torch.stack(masks)

    def loss(self, model, batch, device) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        images, masks = batch
        outputs = model(images.to(device, non_blocking=True))
        return self.criterion(outputs, masks.to(device, non_blocking=True))

    def val_batch_size(self, requested: Optional[int] = None) -> int:
        if requested and requested > 1:
            _logger.info('segmentation is evaluated one image per batch: full-resolution validation images may '
                         'differ in size (--batch-size %d not used)', requested)
        return 1

    def evaluate(self, model, val_set, loader: DataLoader, dist_info: DistInfo,
                 predictions_dir: Optional[Union[str, Path]] = None) -> Dict[str, Any]:
        palette = color_palette(val_set.class_names)

        def save(index: int, prediction: torch.Tensor) -> None:
            path = Path(predictions_dir) / f'{val_set.pairs[index][0].stem}.png'
            height, width = val_set.image_shapes[index]
            prediction = prediction[:height, :width]  # images under the models' minimum were padded
            write_atomic(path, lambda f: mask_to_png(prediction, palette).save(f, format='PNG'))

        if predictions_dir is not None:
            Path(predictions_dir).mkdir(parents=True, exist_ok=True)
        return evaluate_segmentation(model, loader, val_set.num_classes, val_set.class_names, dist_info,
                                     self.cfg.data.ignore_index, on_prediction=save if predictions_dir else None)

    def draw(self, model, val_set, index, device):
        image, mask = val_set[index]
        pred = model(image[None].to(device))['out'].argmax(1)[0].cpu()
        raw = val_set.load_image(index)
        ignore = self.cfg.data.ignore_index
        prediction = overlay_segmentation(raw, pred, val_set.class_names, ignore_index=ignore)
        truth = overlay_segmentation(raw, mask, val_set.class_names, ignore_index=ignore)
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


register_task('segmentation', SegmentationTask)
