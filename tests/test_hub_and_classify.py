"""Verified downloads (file:// URLs, no network), pretrained=True through timm, the classify tool."""
import hashlib
import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from hardnet_backbones import cached_download
from hardnet_backbones.cli import classify

from .reference_hardnet import RefHarDNet


def _published_file(folder, name='hardnet39ds'):
    """Save a reference checkpoint under a torch.hub-style name carrying its SHA-256 prefix."""
    torch.manual_seed(0)
    tmp = folder / 'tmp.pth'
    torch.save(RefHarDNet(name).eval().state_dict(), tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    path = folder / f'{name}-{digest[:8]}.pth'
    tmp.rename(path)
    return path, digest


def test_cached_download_verifies_and_caches(tmp_path):
    source, digest = _published_file(tmp_path)
    cache = tmp_path / 'cache'
    path = cached_download(source.as_uri(), cache_dir=cache, progress=False)
    assert path == cache / source.name and path.read_bytes() == source.read_bytes()
    source.unlink()  # a second call must be served from the cache
    assert cached_download(source.as_uri(), cache_dir=cache) == path
    assert cached_download(source.as_uri(), sha256=digest, cache_dir=cache) == path


def test_cached_download_rejects_wrong_hash(tmp_path):
    source, _ = _published_file(tmp_path)
    bad = tmp_path / 'hardnet39ds-deadbeef.pth'
    source.rename(bad)
    cache = tmp_path / 'cache'
    with pytest.raises(RuntimeError, match='SHA-256 mismatch'):
        cached_download(bad.as_uri(), cache_dir=cache, progress=False)
    assert not (cache / bad.name).exists()


def test_cached_download_offline_error_is_clear(tmp_path):
    with pytest.raises(RuntimeError, match='Could not download'):
        cached_download((tmp_path / 'missing-0123abcd.pth').as_uri(), cache_dir=tmp_path / 'c')


def test_pretrained_true_goes_through_timm_and_the_cache(tmp_path):
    source, _ = _published_file(tmp_path)
    cache = tmp_path / 'cache'
    model = timm.create_model(
        'hardnet39ds', pretrained=True, pretrained_cfg_overlay=dict(url=source.as_uri()), cache_dir=cache)
    assert (cache / source.name).is_file()
    reference = torch.load(source, weights_only=True)
    assert torch.equal(model.classifier.weight, reference['base.14.3.weight'])


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / 'cat.png'
    Image.fromarray((np.random.default_rng(0).random((90, 140, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_classify_tool_end_to_end(tmp_path, image_file, capsys):
    checkpoint, _ = _published_file(tmp_path)
    out = tmp_path / 'pred.json'
    assert classify.main([str(image_file), str(image_file), '--model', 'hardnet39ds',
                          '--checkpoint', str(checkpoint), '--output', str(out)]) == 0
    predictions = json.loads(out.read_text())[str(image_file)]
    assert len(predictions) == 5
    probs = [p['probability'] for p in predictions]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    assert all(p['name'] and 0 <= p['index'] < 1000 for p in predictions)
    printed = capsys.readouterr().out
    assert predictions[0]['name'] in printed


def test_classify_tool_refuses_random_weights(image_file, caplog, monkeypatch, tmp_path):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    monkeypatch.setattr('torch.hub.urlopen', _no_network)
    assert classify.main([str(image_file), '--model', 'hardnet39ds']) == 2
    assert '--checkpoint' in caplog.text


def test_classify_tool_reports_corrupt_checkpoint(tmp_path, image_file, caplog):
    broken = tmp_path / 'broken.pth'
    broken.write_bytes(b'not a checkpoint')
    assert classify.main([str(image_file), '--model', 'hardnet39ds', '--checkpoint', str(broken)]) == 2
    assert 'broken.pth' in caplog.text


def _no_network(*args, **kwargs):
    from urllib.error import URLError
    raise URLError('network disabled in tests')


def test_weight_files_load_through_timm_helpers_and_bad_files_say_what_they_hold(tmp_path):
    from safetensors.torch import save_file

    from hardnet_backbones.errors import CheckpointError
    torch.manual_seed(0)
    reference = RefHarDNet('hardnet39ds').eval().state_dict()
    published = {k: v for k, v in reference.items() if not k.endswith('num_batches_tracked')}
    save_file(published, str(tmp_path / 'hardnet39ds.safetensors'))
    torch.save({'state_dict': {f'module.{k}': v for k, v in published.items()}}, tmp_path / 'wrapped.pth')
    for file in ('hardnet39ds.safetensors', 'wrapped.pth'):
        model = timm.create_model('hardnet39ds', pretrained=True,
                                  pretrained_cfg_overlay=dict(file=str(tmp_path / file)))
        assert torch.equal(model.classifier.weight, reference['base.14.3.weight']), file

    (tmp_path / 'empty.pth').write_bytes(b'')
    torch.save([torch.zeros(2)], tmp_path / 'list.pth')
    torch.save({'epoch': 3, 'note': 'hello'}, tmp_path / 'meta.pth')
    (tmp_path / 'broken.safetensors').write_bytes(b'not a safetensors file')
    for file, message in [('empty.pth', r'Cannot read checkpoint .*empty.pth: it is truncated, corrupt'),
                          ('list.pth', r'list.pth holds a list, expected a dict of tensors'),
                          ('meta.pth', r"meta.pth is not a model state dict: it holds entries \['epoch', 'note'\]"),
                          ('broken.safetensors', 'not a valid safetensors file')]:
        with pytest.raises(CheckpointError, match=message):
            timm.create_model('hardnet39ds', pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / file)))


def test_classify_tool_takes_folders_and_globs_in_batches(tmp_path):
    checkpoint, _ = _published_file(tmp_path)
    photos = tmp_path / 'photos'
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i, size in enumerate([(90, 140), (64, 64), (120, 80)]):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(photos / f'p{i}.jpg')
    (photos / 'readme.txt').write_text('not an image')  # folders yield their images only
    batched_out, single_out = tmp_path / 'batched.json', tmp_path / 'single.json'
    assert classify.main([str(photos), '--model', 'hardnet39ds', '--checkpoint', str(checkpoint),
                          '--batch-size', '2', '--output', str(batched_out)]) == 0
    assert classify.main([str(photos / 'p*.jpg'), '--model', 'hardnet39ds', '--checkpoint', str(checkpoint),
                          '--batch-size', '1', '--output', str(single_out)]) == 0
    batched, single = json.loads(batched_out.read_text()), json.loads(single_out.read_text())
    assert list(batched) == [str(photos / f'p{i}.jpg') for i in range(3)] == list(single)
    for path in batched:
        assert [p['index'] for p in batched[path]] == [p['index'] for p in single[path]]
        expected = [p['probability'] for p in single[path]]
        assert [p['probability'] for p in batched[path]] == pytest.approx(expected, abs=1e-5)
