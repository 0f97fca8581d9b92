"""The web app (hardnet-app): what it offers, what each tab returns (the tools' own results), bad input in the
page, and the server as a person reaches it (Gradio's client; the browser test is in test_app_browser.py)."""
import json
import shutil
import socket
import struct
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hardnet_backbones.app import catalog as catalog_module
from hardnet_backbones.app.catalog import build_catalog, cached_published, find_runs, weights_choice
from hardnet_backbones.app.loading import ModelLoader
from hardnet_backbones.app.main import create_app, get_args_parser, launch
from hardnet_backbones.app.main import main as app_main
from hardnet_backbones.app.pages import DONE, REFUSED, Pages
from hardnet_backbones.cli import classify as classify_cli
from hardnet_backbones.cli import detect as detect_cli
from hardnet_backbones.cli import segment as segment_cli
from hardnet_backbones.errors import ConfigError

from .helpers import free_port

pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::PendingDeprecationWarning')


def _pages(app_runs, **kwargs) -> Pages:
    return Pages(build_catalog(app_runs['root'], published=False), ModelLoader('cpu'), **kwargs)


def _label(pages: Pages, task: str) -> str:
    return pages.labels(task)[0]


def test_the_catalog_finds_runs_their_int8_exports_and_cached_published_weights(app_runs, tmp_path, monkeypatch):
    found = {c.task: c for c in find_runs(app_runs['root'])}
    assert sorted(found) == ['classification', 'detection', 'segmentation']
    assert found['segmentation'].int8.name == 'fcn_hardnet39ds.int8.onnx' and found['detection'].int8 is None
    assert found['detection'].label.startswith('shapes/det · ssdlite320_hardnet39ds')
    assert find_runs(tmp_path / 'nothing') == []

    monkeypatch.setattr(catalog_module, '_cache_dir', lambda: tmp_path)
    assert cached_published() == []
    (tmp_path / 'hardnet68-5d684880.pth').write_bytes(b'')
    (tmp_path / 'centernet_hardnet85_coco_608.pth').write_bytes(b'')
    published = cached_published()
    assert [(c.task, c.model_name, c.weights) for c in published] == [
        ('classification', 'hardnet68', None), ('detection', 'centernet_hardnet85', 'COCO_608')]


@pytest.mark.parametrize('spec, message', [
    ('hardnet68', 'expected MODEL=FILE'),
    ('nonet=x.pth', 'nonet'),
    ('hardnet68=missing.pth', 'no such file missing.pth'),
    ('fcn_hardnet68=FILE', 'gives no class names for fcn_hardnet68'),
])
def test_weights_specs_are_checked_before_serving(spec, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'FILE').write_bytes(b'')
    with pytest.raises(ConfigError, match=message):
        weights_choice(spec)


@pytest.mark.slow
def test_every_tab_gives_what_the_tools_give(app_runs, tmp_path):
    """The page runs the tools' code: the same detections, pixel shares and top classes as hardnet-detect,
    hardnet-segment and hardnet-classify on the same image and run."""
    pages, image = _pages(app_runs), str(app_runs['image'])
    picture, rows, json_file, status = pages.detect(_label(pages, 'detection'), 'float32', image, 0.05)
    assert status.startswith(DONE) and isinstance(picture, Image.Image)
    assert detect_cli.main([image, '--checkpoint', str(app_runs['root'] / 'shapes/det/best.pth'),
                            '--score-threshold', '0.05', '--out-dir', str(tmp_path / 'det')]) == 0
    tool_rows = json.loads((tmp_path / 'det' / 'detections.json').read_text())[image]
    assert json.loads(Path(json_file).read_text())['detections'] == tool_rows and len(tool_rows) == len(rows) > 0
    assert rows[0][:2] == [tool_rows[0]['label'], round(tool_rows[0]['score'], 3)]

    overlay, legend, status = pages.segment(_label(pages, 'segmentation'), 'float32', image)
    assert status.startswith(DONE) and overlay.size == Image.open(image).size
    assert segment_cli.main([image, '--checkpoint', str(app_runs['root'] / 'shapes/seg/best.pth'),
                             '--out-dir', str(tmp_path / 'seg'), '--output-json', str(tmp_path / 'seg.json')]) == 0
    shares = json.loads((tmp_path / 'seg.json').read_text())[image]['class_shares']
    for name, share in shares.items():
        assert (f'>{name}</span> <span class="share">{share:.1%}<' in legend) == (share > 0), (name, legend)

    crop = sorted((app_runs['crops'] / 'val').rglob('*.png'))[0]
    shown, top, status = pages.classify(_label(pages, 'classification'), 'float32', str(crop))
    assert status.startswith(DONE) and shown.size == Image.open(crop).size
    assert classify_cli.main([str(crop), '--checkpoint', str(app_runs['root'] / 'cls/best.pth'),
                              '--output', str(tmp_path / 'cls.json')]) == 0
    tool_top = json.loads((tmp_path / 'cls.json').read_text())[str(crop)]
    assert list(top) == [p['name'] for p in tool_top]
    assert list(top.values()) == pytest.approx([p['probability'] for p in tool_top], abs=1e-6)


@pytest.mark.slow
def test_int8_runs_where_the_run_was_exported_and_is_explained_where_not(app_runs):
    pages, image = _pages(app_runs), str(app_runs['image'])
    overlay, legend, status = pages.segment(_label(pages, 'segmentation'), 'int8', image)
    assert status.startswith(f'{DONE}fcn_hardnet39ds · int8 · ') and 'class="share"' in legend
    *_, status = pages.detect(_label(pages, 'detection'), 'int8', image)
    assert status.startswith(REFUSED) and 'has no int8 export: run hardnet-export --checkpoint' in status


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A tiny PNG file that claims ``width`` x ``height`` pixels: what a decompression bomb looks like from outside."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(b'\0' * 64))
                     + chunk(b'IEND', b''))


def _bad_uploads(folder: Path):
    (folder / 'notes.jpg').write_text('hello')
    photo = folder / 'photo.jpg'
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(photo, quality=90)
    (folder / 'cut.jpg').write_bytes(photo.read_bytes()[:-200])
    _png_header_only(folder / 'bomb.png', 12000, 9000)
    _png_header_only(folder / 'huge_bomb.png', 40000, 40000)
    return [
        (None, 'no image: upload one first'),
        (folder / 'notes.jpg', 'notes.jpg: cannot read the image header'),
        (folder / 'cut.jpg', 'cut.jpg: cannot decode the image, the file is truncated'),
        (folder / 'bomb.png', "bomb.png: 12000x9000 pixels \\(108 MP\\) is over the app's limit of 64 MP"),
        (folder / 'huge_bomb.png', 'huge_bomb.png: Image size .* exceeds limit .* decompression bomb'),
    ]


@pytest.mark.slow
def test_bad_input_is_one_line_in_the_page(app_runs, tmp_path):
    import re

    pages = _pages(app_runs)
    for upload, message in _bad_uploads(tmp_path):
        for task, run in (('classification', pages.classify), ('detection', pages.detect),
                          ('segmentation', pages.segment)):
            outputs = run(_label(pages, task), 'float32', str(upload) if upload else None)
            status = outputs[-1]
            assert all(o is None for o in outputs[:-1]) and '\n' not in status, (upload, status)
            assert status.startswith(REFUSED) and re.search(message, status), (upload, status)
            assert str(tmp_path) not in status  # the file as the person named it, not the server's copy

    broken = tmp_path / 'runs' / 'broken'
    broken.mkdir(parents=True)
    shutil.copy(app_runs['root'] / 'shapes' / 'seg' / 'config.yaml', broken)
    (broken / 'best.pth').write_bytes(b'\x80\x02garbage')
    pages = Pages(build_catalog(tmp_path / 'runs', published=False), ModelLoader('cpu'))
    *_, status = pages.segment(_label(pages, 'segmentation'), 'float32', str(app_runs['image']))
    assert status.startswith(REFUSED) and 'best.pth: it is truncated, corrupt or not a PyTorch file' in status
    *_, status = pages.detect(None, 'float32', str(app_runs['image']))
    assert status == f'{REFUSED}no detection model: start the app with --runs DIR (a folder of tools/train.py runs) ' \
                     f'or --weights MODEL=FILE'


@pytest.mark.slow
def test_huge_rotated_and_16_bit_images_are_shown_as_a_viewer_shows_them(app_runs, tmp_path):
    pages = _pages(app_runs, max_side=256)
    wide = tmp_path / 'panorama.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 1000, 3), dtype=np.uint8)).save(wide)
    picture, rows, _, status = pages.detect(_label(pages, 'detection'), 'float32', str(wide), 0.0)
    assert 'resized from 1000x100 to 256x26 (the app works at 256 px)' in status and rows

    phone = tmp_path / 'phone.jpg'  # stored sideways (landscape) with EXIF orientation 6: a portrait photo
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.full((60, 90, 3), 200, np.uint8)).save(phone, exif=exif.tobytes())
    overlay, _, status = pages.segment(_label(pages, 'segmentation'), 'float32', str(phone))
    assert status.startswith(DONE) and overlay.size == (60, 90) and '60x90 px' in status

    deep = tmp_path / 'scan16.png'
    Image.fromarray(np.full((64, 64), 40000, np.uint16)).save(deep)
    shown, top, status = pages.classify(_label(pages, 'classification'), 'float32', str(deep))
    assert status.startswith(DONE) and shown.getpixel((0, 0)) == (156, 156, 156)


def test_the_command_line_refuses_in_one_line(tmp_path, caplog, monkeypatch):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert app_main(['--runs', str(tmp_path), '--port', str(port)]) == 2
    assert f'cannot serve on 127.0.0.1:{port}' in caplog.text and 'choose another --port' in caplog.text
    caplog.clear()
    assert app_main(['--runs', str(tmp_path), '--port', str(free_port()), '--weights', 'hardnet68']) == 2
    assert 'expected MODEL=FILE' in caplog.text
    caplog.clear()
    monkeypatch.setitem(sys.modules, 'gradio', None)  # not installed
    assert app_main(['--runs', str(tmp_path), '--port', str(free_port())]) == 2
    assert 'pip install "hardnet-backbones[app]"' in caplog.text


class _RecordingPages(Pages):
    """Pages that record when each request ran, to see the queue keep one model run at a time."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.spans = []
        self._lock = threading.Lock()

    def _record(self, run, *args):
        start = time.perf_counter()
        time.sleep(0.3)
        result = run(*args)
        with self._lock:
            self.spans.append((start, time.perf_counter()))
        return result

    def classify(self, *args):
        return self._record(super().classify, *args)

    def segment(self, *args):
        return self._record(super().segment, *args)


@pytest.fixture(scope='module')
def served(app_runs):
    """The app served on a free loopback port as ``hardnet-app`` serves it, with a 200 kB upload limit."""
    args = get_args_parser().parse_args(['--runs', str(app_runs['root']), '--no-published', '--port',
                                         str(free_port()), '--max-file-size', '200kb'])
    _, pages = create_app(args)
    pages = _RecordingPages(pages.catalog, pages.loader)
    from hardnet_backbones.app.ui import build_app
    app = build_app(pages)
    _, url, share_url = launch(app, args, block=False)
    yield dict(url=url, share_url=share_url, pages=pages)
    app.close()


@pytest.mark.slow
def test_the_served_app_answers_every_tab_through_gradios_client(served, app_runs, tmp_path):
    from gradio_client import Client, handle_file

    assert served['url'].startswith('http://127.0.0.1:') and served['share_url'] is None
    client = Client(served['url'], verbose=False)
    assert {'/classify', '/detect', '/segment'} <= set(client.view_api(return_format='dict')['named_endpoints'])
    pages, image = served['pages'], handle_file(str(app_runs['image']))
    shown, top, status = client.predict(_label(pages, 'classification'), 'float32', image, api_name='/classify')
    assert status.startswith(DONE) and len(top['confidences']) == 3 and Path(shown).is_file()
    picture, table, json_file, status = client.predict(_label(pages, 'detection'), 'float32', image, 0.05,
                                                       api_name='/detect')
    assert status.startswith(DONE) and table['headers'] == ['label', 'score', 'x1', 'y1', 'x2', 'y2']
    assert len(json.loads(Path(json_file).read_text())['detections']) == len(table['data']) > 0
    overlay, legend, status = client.predict(_label(pages, 'segmentation'), 'int8', image, api_name='/segment')
    assert status.startswith(DONE) and ' · int8 · ' in status and 'class="legend"' in legend

    notes = tmp_path / 'notes.png'
    notes.write_text('not an image')
    *_, status = client.predict(_label(pages, 'segmentation'), 'float32', handle_file(str(notes)),
                                api_name='/segment')
    assert status.startswith(REFUSED) and 'notes.png: cannot read the image header' in status
    big = tmp_path / 'big.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > 200_000
    with pytest.raises(Exception, match='(?i)(file size|too large|exceeds)'):
        client.predict(_label(pages, 'segmentation'), 'float32', handle_file(str(big)), api_name='/segment')
    *_, status = client.predict(_label(pages, 'segmentation'), 'float32', image, api_name='/segment')
    assert status.startswith(DONE)  # still serving


@pytest.mark.slow
def test_two_people_do_not_run_two_models_at_once(served, app_runs):
    from gradio_client import Client, handle_file

    pages, image = served['pages'], handle_file(str(app_runs['image']))
    first, second = Client(served['url'], verbose=False), Client(served['url'], verbose=False)
    pages.spans.clear()
    jobs = [first.submit(_label(pages, 'classification'), 'float32', image, api_name='/classify'),
            second.submit(_label(pages, 'segmentation'), 'float32', image, api_name='/segment')]
    assert all(job.result(timeout=120)[-1].startswith(DONE) for job in jobs)
    (start_a, end_a), (start_b, end_b) = sorted(pages.spans)
    assert end_a <= start_b, 'the two requests ran their models at the same time'


def test_published_detector_weights_load_from_the_cache_with_coco_names(tmp_path, monkeypatch):
    """A published detector found in the cache is built from it (pinned) with COCO's names; one that does not fit
    the model is one line."""
    from hardnet_backbones.models import create_model

    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    (tmp_path / 'checkpoints').mkdir()
    torch.manual_seed(0)
    state = create_model('ssd512_hardnet68', num_classes=81).state_dict()
    torch.save(state, tmp_path / 'checkpoints' / 'SSD512_HarDNet68_COCO.pth')
    choices = cached_published()
    assert [c.label for c in choices] == ['ssd512_hardnet68 · COCO (published)']
    loaded = ModelLoader('cpu').get(choices[0], 'float32')
    assert loaded.class_names[0] == 'person' and len(loaded.class_names) == 80
    assert (tmp_path / 'checkpoints' / 'hardnet_backbones_pins.json').is_file()

    torch.save({k: v for k, v in list(state.items())[:-4]}, tmp_path / 'checkpoints' / 'SSD512_HarDNet68_COCO.pth')
    pages = Pages({'classification': [], 'detection': choices, 'segmentation': []}, ModelLoader('cpu'))
    photo = tmp_path / 'photo.png'
    Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(photo)
    *_, status = pages.detect(choices[0].label, 'float32', str(photo))
    assert status.startswith(REFUSED) and 'SSD512_HarDNet68_COCO.pth is not the file first used' in status
