"""SSD512-HarDNet's published test post-processing: per-class NMS then the best 50, 200 per image with ties kept,
boxes not clipped, the COCO boxes of inclusive training boxes; checked against a literal re-implementation of the
published loop, on its own and through the model."""
import pytest
import torch

from hardnet_backbones.models import create_model, get_model_entry
from hardnet_backbones.models.ssd512 import ssd512_checkpoint_filter
from hardnet_backbones.models.ssd512_postprocess import InclusiveBoxesTransform, published_ssd_detections

from .reference_ssd512 import (
    ReferenceSSD512, reference_coco_results, reference_decode, reference_detect, reference_priors)


def clustered_boxes_and_scores(n=600, classes=6, seed=0):
    """Boxes in a few overlapping clusters (NMS has work to do) with peaked class scores (many candidates)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(8, 2, generator=g)[torch.randint(0, 8, (n,), generator=g)] * 400
    xy = centres + torch.randn(n, 2, generator=g) * 12
    wh = 20 + torch.rand(n, 2, generator=g) * 60
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], 1) - 30  # some outside the image: not clipped
    scores = torch.softmax(torch.randn(n, classes, generator=g) * 3, 1)
    return boxes, scores


def as_rows(boxes, scores, labels):
    return sorted((int(j), float(s), b) for j, s, b in zip(labels, scores, boxes.tolist()))


@pytest.mark.parametrize('per_class, per_image', [(50, 200), (5, 1000), (50, 12)])
def test_equals_the_published_loop(per_class, per_image):
    boxes, scores = clustered_boxes_and_scores()
    got = as_rows(*published_ssd_detections(boxes, scores, 0.02, 0.45, per_class, per_image))
    expected = sorted(reference_detect(boxes, scores, 0.02, 0.45, per_class, per_image))
    assert got == expected and len(got) >= 12
    assert min(b[0] for _, _, b in got) < 0  # not clipped


@pytest.mark.parametrize('window', [1, 3, 1000])
def test_nms_on_each_class_best_candidates_keeps_what_nms_on_all_keeps(window):
    from torchvision.ops import batched_nms

    from hardnet_backbones.models.ssd512_postprocess import _nms_on_the_best, _rank_within_label
    boxes, scores = clustered_boxes_and_scores(n=2000)
    prior, label = torch.nonzero(scores[:, 1:] > 0.02, as_tuple=True)
    label = label + 1
    score = scores[prior, label]
    for per_class in (1, 4, 50):
        full = batched_nms(boxes[prior], score, label, 0.45)
        full = full[_rank_within_label(label[full], 6) < per_class]
        best = _nms_on_the_best(boxes[prior], score, label, 0.45, per_class, 6, window)
        best = best[_rank_within_label(label[best], 6) < per_class]
        assert torch.equal(best, full), (window, per_class)


def test_the_cap_per_image_keeps_ties_and_the_caps_bite():
    boxes, scores = clustered_boxes_and_scores()
    boxes_c, scores_c, labels_c = published_ssd_detections(boxes, scores, 0.02, 0.45, 3, 10_000)
    assert torch.bincount(labels_c).max() == 3  # the best 3 per class after NMS
    uncapped = published_ssd_detections(boxes, scores, 0.02, 0.45, 50, 10_000)[1]
    assert len(published_ssd_detections(boxes, scores, 0.02, 0.45, 50, 7)[1]) == 7 < len(uncapped)
    # one class: a best box and four far-apart boxes with the same score; 3 asked, the 3rd is tied with 2 more
    spread = torch.tensor([[0, 0, 10, 10], [100, 0, 110, 10], [200, 0, 210, 10], [300, 0, 310, 10]]).float()
    tied_boxes = torch.cat([spread[:1] + 5, spread])
    tied_scores = torch.tensor([[0.05, 0.95], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9]])
    kept = published_ssd_detections(tied_boxes, tied_scores, 0.02, 0.45, 50, 3)[1]
    assert kept.tolist() == pytest.approx([0.95, 0.9, 0.9, 0.9, 0.9])
    empty = published_ssd_detections(boxes, torch.zeros_like(scores), 0.02, 0.45, 50, 200)
    assert [t.shape[0] for t in empty] == [0, 0, 0]


@pytest.mark.slow
@pytest.mark.parametrize('height, width', [(512, 512), (480, 640)])
def test_the_model_gives_the_published_detections_and_coco_boxes(tmp_path, height, width):
    torch.manual_seed(0)
    net = ReferenceSSD512(68)
    with torch.no_grad():
        for conv in net.conf:
            conv.weight.mul_(5)  # peaked class scores, so that many priors pass the threshold
    path = tmp_path / 'SSD512_HarDNet68_COCO.pth'
    torch.save({f'module.{k}': v for k, v in net.state_dict().items()}, path)
    model = create_model('ssd512_hardnet68', weights=path).eval()
    assert model.transform.inclusive_boxes == 1  # a published file with its class head
    heads = []
    model.head.register_forward_hook(lambda module, inputs, output: heads.append(output))
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model([image])[0]
    loc, logits = heads[0]['bbox_regression'][0], heads[0]['cls_logits'][0]
    boxes = reference_decode(loc, reference_priors()) * torch.tensor([width, height, width, height])
    expected = reference_coco_results(reference_detect(boxes, torch.softmax(logits, 1)))
    assert 50 < len(expected) and len(out['boxes']) == len(expected)
    xywh = torch.cat([out['boxes'][:, :2], out['boxes'][:, 2:] - out['boxes'][:, :2]], 1)  # as COCO json is made
    got = sorted(zip(out['labels'].tolist(), out['scores'].tolist(), xywh.tolist()))
    expected = sorted(expected)
    assert [(j, s) for j, s, _ in got] == [(j, pytest.approx(s)) for j, s, _ in expected]
    torch.testing.assert_close(torch.tensor([b for *_, b in got]), torch.tensor([b for *_, b in expected]),
                               rtol=0, atol=1e-3)


def inclusive(model):
    assert isinstance(model.transform, InclusiveBoxesTransform)
    return float(model.transform.inclusive_boxes)


def test_inclusive_boxes_follow_the_weights_and_bad_settings_are_one_line(tmp_path):
    path = tmp_path / 'coco.pth'
    published = ReferenceSSD512(68).state_dict()
    torch.save(published, path)
    assert inclusive(create_model('ssd512_hardnet68', weights=path)) == 1
    assert inclusive(create_model('ssd512_hardnet68', weights=path, num_classes=5)) == 0  # a new class head
    assert inclusive(create_model('ssd512_hardnet68', weights=path, inclusive_boxes=False)) == 0  # the setting wins
    assert inclusive(create_model('ssd512_hardnet68', num_classes=3, size=288, inclusive_boxes=True)) == 1
    # loaded after building, as tools/evaluate.py --checkpoint does, then saved and loaded as a run's checkpoint
    built = create_model('ssd512_hardnet68', num_classes=81)
    assert inclusive(built) == 0
    built.load_state_dict(get_model_entry('ssd512_hardnet68').checkpoint_filter(published, built))
    assert inclusive(built) == 1
    reloaded = create_model('ssd512_hardnet68', num_classes=81)
    reloaded.load_state_dict(ssd512_checkpoint_filter(built.state_dict(), reloaded))
    assert inclusive(reloaded) == 1
    explicit = create_model('ssd512_hardnet68', num_classes=81, inclusive_boxes=False)
    explicit.load_state_dict(ssd512_checkpoint_filter(published, explicit))
    assert inclusive(explicit) == 0
    assert create_model('ssd512_hardnet68', num_classes=3).transform.detector == 'PublishedSSD'
    with pytest.raises(ValueError, match='no cap before NMS'):
        create_model('ssd512_hardnet68', num_classes=3, topk_candidates=100)
    with pytest.raises(ValueError, match='per_class_detections must be an integer >= 1'):
        create_model('ssd512_hardnet68', num_classes=3, per_class_detections=0)
    with pytest.raises(ValueError, match='inclusive_boxes must be true, false or null'):
        create_model('ssd512_hardnet68', num_classes=3, inclusive_boxes='yes')
    with pytest.raises(TypeError, match="did you mean 'per_class_detections'"):
        create_model('ssd512_hardnet68', num_classes=3, per_class_detection=10)


@pytest.mark.slow
def test_onnx_and_torchscript_export_with_the_published_post_processing(tmp_path):
    from hardnet_backbones.deploy import (
        OnnxRuntimeModel, export_onnx, export_torchscript, validate_onnx, validate_torchscript)

    torch.manual_seed(0)
    model = create_model('ssd512_hardnet68', num_classes=4, size=288, score_thresh=0.2, detections_per_img=30,
                         inclusive_boxes=True).eval()
    with torch.no_grad():
        for conv in model.head.classification_head.module_list:
            conv.weight.mul_(0.3)  # unsaturated scores: ties at 1.0 would leave the order to chance
    path = export_onnx(model, tmp_path / 'ssd512.onnx', 'detection', (288, 288))
    report = validate_onnx(path, model, 'detection', (288, 288), 1e-3, images=[torch.rand(3, 200, 300)])
    assert report['ok'] and report['detections'] > 0, report
    out = OnnxRuntimeModel(path, 'detection')([torch.rand(3, 160, 240)])[0]
    assert set(out) == {'boxes', 'scores', 'labels'} and out['boxes'].shape[1] == 4
    scripted = export_torchscript(model, tmp_path / 'ssd512.pt', 'detection', (288, 288))
    report = validate_torchscript(scripted, model, 'detection', (288, 288), 1e-4, images=[torch.rand(3, 200, 300)])
    assert report['ok'] and report['detections'] > 0, report


@pytest.mark.subprocess
@pytest.mark.parametrize('kwargs, message', [
    ('{size: 320, inclusive_boxes: sometimes}', "model.kwargs.inclusive_boxes: expected bool, got 'sometimes'"),
    ('{size: 320, topk_candidates: 100}', 'no cap before NMS'),
])
def test_published_post_processing_settings_in_a_config_are_one_line(shapes_root, tmp_path, kwargs, message):
    from .helpers import DETECTION, detection_overrides
    from .test_bad_inputs import assert_refused, run_tool
    overrides = [f'--set={o}' for o in detection_overrides(shapes_root, tmp_path / 'run', epochs=1, workers=0)]
    proc = run_tool('train', DETECTION, *overrides, '--set=model.name=ssd512_hardnet68',
                    f'--set=model.kwargs={kwargs}', cwd=tmp_path)
    assert_refused(proc, message)
    assert not (tmp_path / 'run').exists()
