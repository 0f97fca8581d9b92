"""Detection metrics: COCO mAP through pycocotools ``COCOeval`` (boxes, and masks for instance segmentation) and
VOC-style AP50."""
import contextlib
import io
import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.instance_masks import encode_mask
from ..errors import CheckpointError
from ..utils.distributed import DistInfo, all_gather_objects
from ..utils.progress import progress_bar

__all__ = ['COCO_STAT_NAMES', 'CONFIDENT_SCORE', 'coco_map', 'voc_ap50', 'predictions_to_coco', 'evaluate_detection']

_logger = logging.getLogger(__name__)

# hardnet-detect's default --score-threshold: a detection this confident is drawn; none on any validation image
# means the model finds nothing yet
CONFIDENT_SCORE = 0.3

COCO_STAT_NAMES = ('mAP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'AR1', 'AR10', 'AR100', 'ARs', 'ARm', 'ARl')


def predictions_to_coco(
        image_ids: Sequence[Any],
        outputs: Sequence[Mapping[str, torch.Tensor]],
        label_to_cat_id: Mapping[int, int],
) -> List[Dict[str, Any]]:
    """torchvision detector outputs (xyxy boxes, labels, scores, and ``(N, 1, H, W)`` mask probabilities from
    instance segmenters) -> COCO result dicts (xywh ``bbox``; ``segmentation`` as compressed RLE of the mask
    above 0.5, as torchvision's references threshold it)."""
    results = []
    for image_id, out in zip(image_ids, outputs):
        boxes = out['boxes'].detach().cpu().double()
        boxes[:, 2:] -= boxes[:, :2]
        masks = out['masks'].detach().cpu()[:, 0] > 0.5 if 'masks' in out else [None] * len(boxes)
        for box, label, score, mask in zip(boxes.tolist(), out['labels'].tolist(), out['scores'].tolist(), masks):
            if int(label) not in label_to_cat_id:
                raise CheckpointError(f'the model predicts label {int(label)}, which is not one of its classes '
                                      f'(1..{len(label_to_cat_id)}): is it (or its ONNX file) of another model?')
            result = dict(image_id=image_id, category_id=label_to_cat_id[int(label)],
                          bbox=[round(v, 2) for v in box], score=float(score))
            if mask is not None:
                result['segmentation'] = encode_mask(mask.numpy())
            results.append(result)
    return results


def coco_map(coco_gt: COCO, results: List[Dict[str, Any]], iou_type: str = 'bbox') -> Dict[str, Optional[float]]:
    """The 12 COCOeval summary numbers (AP, AP50, AP75, APs/m/l, AR...) in [0, 1]; zeros without detections.

    ``iou_type='segm'`` scores the results' ``segmentation`` masks (their areas and boxes come from the masks,
    as in torchvision's references) against the ground truth's.
    """
    if not results:
        return {name: 0.0 for name in COCO_STAT_NAMES}
    # loadRes adds keys to the dicts it gets: give it copies (for masks without the boxes, see above)
    results = [{k: v for k, v in r.items() if iou_type != 'segm' or k != 'bbox'} for r in results]
    with contextlib.redirect_stdout(io.StringIO()) as text:
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    _logger.debug('COCOeval (%s):\n%s', iou_type, text.getvalue().strip())  # the metrics line has the numbers
    # COCOeval reports -1 where a size range has no ground truth: None says "not measurable"
    return {name: float(v) if v >= 0 else None for name, v in zip(COCO_STAT_NAMES, evaluator.stats)}


def _box_iou(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    lt = np.maximum(boxes[:, None, :2], gt[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], gt[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    return inter / (area(boxes)[:, None] + area(gt)[None] - inter)


def voc_ap50(coco_gt: COCO, results: List[Dict[str, Any]], iou_threshold: float = 0.5) -> Optional[float]:
    """VOC-style AP at IoU 0.5 (all-points interpolation), averaged over classes with ground truth.

    Ground truth marked ``iscrowd`` (COCO crowds, VOC 'difficult') is ignored: detections matching
    it count neither as true nor as false positives. None when no class has ground truth (as COCOeval's -1).
    """
    aps = []
    for cat_id in coco_gt.getCatIds():
        gts: Dict[Any, Dict[str, np.ndarray]] = {}
        num_positives = 0
        for ann in coco_gt.loadAnns(coco_gt.getAnnIds(catIds=[cat_id])):
            x, y, w, h = ann['bbox']
            entry = gts.setdefault(ann['image_id'], dict(boxes=[], ignore=[]))
            entry['boxes'].append([x, y, x + w, y + h])
            entry['ignore'].append(bool(ann.get('iscrowd', 0)))
            num_positives += not ann.get('iscrowd', 0)
        if num_positives == 0:
            continue
        matched = {k: np.zeros(len(v['boxes']), bool) for k, v in gts.items()}
        dets = sorted((r for r in results if r['category_id'] == cat_id), key=lambda r: -r['score'])
        tp, fp = [], []
        for det in dets:
            x, y, w, h = det['bbox']
            gt = gts.get(det['image_id'])
            if gt is None:
                tp.append(0)
                fp.append(1)
                continue
            ious = _box_iou(np.array([[x, y, x + w, y + h]]), np.array(gt['boxes']))[0]
            best = int(ious.argmax())
            if ious[best] < iou_threshold:
                tp.append(0)
                fp.append(1)
            elif gt['ignore'][best]:
                continue
            elif not matched[det['image_id']][best]:
                matched[det['image_id']][best] = True
                tp.append(1)
                fp.append(0)
            else:
                tp.append(0)
                fp.append(1)
        tp_cum, fp_cum = np.cumsum(tp), np.cumsum(fp)
        recall = tp_cum / num_positives
        precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
        aps.append(_average_precision(recall, precision))
    return float(np.mean(aps)) if aps else None


def _average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


@torch.inference_mode()
def evaluate_detection(
        model: torch.nn.Module,
        loader: torch.utils.data.DataLoader,
        coco_gt: COCO,
        label_to_cat_id: Mapping[int, int],
        dist_info: DistInfo,
) -> Tuple[Dict[str, float], List[Dict[str, Any]]]:
    """Run ``model`` over ``loader`` (sharded across processes), gather on every rank, score.

    Returns COCO stats (``mAP`` = AP@[.5:.95], ``AP50``, ...) plus ``voc_AP50``, all in [0, 1], and the
    detections as COCO results (the dataset's category ids, xywh boxes). For a model that predicts masks, the
    mask stats follow as ``segm_mAP``, ``segm_AP50``, ... and the results carry RLE ``segmentation``.
    """
    model.eval()
    results: List[Dict[str, Any]] = []
    predicts_masks = False
    for images, targets in progress_bar(loader, desc='evaluate', disable=not dist_info.is_main, leave=False):
        outputs = model([img.to(dist_info.device, non_blocking=True) for img in images])
        predicts_masks = predicts_masks or any('masks' in out for out in outputs)
        results += predictions_to_coco([t['image_id'] for t in targets], outputs, label_to_cat_id)
    results = [r for part in all_gather_objects(results) for r in part]
    metrics = coco_map(coco_gt, results)
    metrics['voc_AP50'] = voc_ap50(coco_gt, results)
    if predicts_masks:
        metrics.update({f'segm_{k}': v for k, v in coco_map(coco_gt, results, 'segm').items()})
    best = max((r['score'] for r in results), default=None)
    if best is None or best < CONFIDENT_SCORE:
        metrics['degenerate'] = (f'no detection scores {CONFIDENT_SCORE} or more on any validation image '
                                 f'(best: {"none" if best is None else round(best, 3)})')
        _logger.warning('%s: the model finds nothing yet', metrics['degenerate'])
    return metrics, results
