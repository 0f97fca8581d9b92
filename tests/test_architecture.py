"""The package's shape: layers that import only downwards, thin ``__init__`` files, small modules, one registry."""
import ast
import inspect
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple

import pytest

from hardnet_backbones.models import TORCHVISION_PREFIX, get_model_entry, list_models

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'hardnet_backbones'

# lowest first; a module may import from its own package and from lower layers only
LAYERS = (
    ('errors',),
    ('utils',),
    ('models',),
    ('data',),
    ('evaluation', 'visualization'),
    ('deploy',),
    ('engine',),
    ('tasks',),
    ('inference',),
    ('benchmark',),
    ('cli',),
    ('app',),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
MAX_MODULE_LINES = 400


def _modules() -> Iterator[Path]:
    return (p for p in sorted(PACKAGE.rglob('*.py')) if p.parent != PACKAGE or p.name == 'errors.py')


def _imported_packages(source: str, package: List[str]) -> Iterator[Tuple[int, str]]:
    """(line, top-level package of hardnet_backbones) of every import in ``source``, lazy ones included;
    ``package`` is the dotted package of the module, as a list."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                target = package[:len(package) - node.level + 1] + (node.module.split('.') if node.module else [])
            else:
                target = (node.module or '').split('.')
            names = [a.name for a in node.names] if len(target) == 1 else [target[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split('.')[1] for a in node.names if a.name.startswith('hardnet_backbones.')]
            target = ['hardnet_backbones'] if names else []
        else:
            continue
        if target[:1] == ['hardnet_backbones']:
            for name in names:
                yield node.lineno, name


def _wrong_way_imports(source: str, module: Sequence[str]) -> List[str]:
    """What a module (``module``: its dotted name as a list) imports against the layering."""
    own = module[1]
    assert own in RANK, f'{own} is in no layer of this test: add it to LAYERS'
    wrong = []
    for line, imported in _imported_packages(source, list(module[:-1])):
        if imported not in RANK or (imported != own and RANK[imported] >= RANK[own]):
            wrong.append(f'line {line} imports {imported} (layer {RANK.get(imported)}) from layer {RANK[own]}')
    return wrong


@pytest.mark.parametrize('path', list(_modules()), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layers_import_only_downwards(path):
    module = path.relative_to(ROOT).with_suffix('').parts
    assert not _wrong_way_imports(path.read_text(), module), path.relative_to(ROOT)


def test_the_layering_check_sees_wrong_way_imports():
    lazy = 'def f():\n    from ..engine.config import Config\n    return Config\n'
    assert _wrong_way_imports(lazy, ('hardnet_backbones', 'models', 'probe')) == [
        'line 2 imports engine (layer 6) from layer 2']
    absolute = 'import hardnet_backbones.cli.train\nfrom hardnet_backbones import tasks\n'
    assert len(_wrong_way_imports(absolute, ('hardnet_backbones', 'engine', 'probe'))) == 2
    assert _wrong_way_imports('from ..models import create_model\n', ('hardnet_backbones', 'cli', 'probe')) == []


@pytest.mark.parametrize('path', sorted(PACKAGE.rglob('__init__.py')), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_init_files_only_re_export(path):
    allowed = (ast.Import, ast.ImportFrom, ast.Expr)  # Expr: the docstring
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] in (['__all__'], ['__version__']):
            continue
        if path.parent == PACKAGE and isinstance(node, ast.FunctionDef) and node.name == '__getattr__':
            continue  # the lazy re-export of load_trained_model
        assert isinstance(node, allowed), f'{path.relative_to(ROOT)}:{node.lineno} holds logic, not re-exports'


@pytest.mark.parametrize('path', sorted(PACKAGE.rglob('*.py')), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES, f'{path.relative_to(ROOT)}: split it by concern'


def test_one_prefix_for_torchvision_models_everywhere():
    for path in [*PACKAGE.rglob('*.py'), *(ROOT / 'configs').rglob('*.yaml'), *(ROOT / 'docs').glob('*.md'),
                 ROOT / 'README.md']:
        assert "'tv:" not in path.read_text() and ' tv:' not in path.read_text(), path


@pytest.mark.parametrize('task', ['detection', 'segmentation'])
def test_every_registered_builder_follows_torchvision_conventions(task):
    names = list_models(task)
    assert names
    for name in names:
        entry = get_model_entry(name)
        assert entry.task == task and entry.builder.__name__ == name
        assert {'num_classes', 'weights_backbone'} <= set(entry.arguments()), name
        kinds = {p.name: p.kind for p in inspect.signature(entry.builder).parameters.values()}
        assert kinds['num_classes'] == inspect.Parameter.KEYWORD_ONLY, name


def test_the_registry_resolves_ours_torchvision_and_timm_names():
    assert {'hardnet39ds', 'hardnet68ds', 'hardnet68', 'hardnet85'} <= set(list_models('classification'))
    assert get_model_entry('ssdlite320_hardnet39ds').input_size == 320
    assert get_model_entry('ssd512_hardnet85').input_size == 512
    tv = get_model_entry(TORCHVISION_PREFIX + 'ssd300_vgg16')
    assert (tv.task, tv.input_size, tv.source) == ('detection', 300, 'torchvision')
    assert 'score_thresh' in tv.arguments() and 'weights' not in tv.arguments()
    assert get_model_entry(TORCHVISION_PREFIX + 'lraspp_mobilenet_v3_large').task == 'segmentation'
    assert get_model_entry('resnet50').source == 'timm'
    with pytest.raises(ValueError, match="did you mean 'ssdlite320_hardnet39ds'"):
        get_model_entry('ssdlite320_hardnet39d')
    with pytest.raises(ValueError, match='not a torchvision classification, detection or segmentation model'):
        get_model_entry(TORCHVISION_PREFIX + 'raft_large')


def test_a_new_builder_is_known_to_every_tool_once_registered(tmp_path):
    """Registering is all it takes: config validation, the engine's builder and the benchmark find it."""
    import torch.nn as nn

    from hardnet_backbones.benchmark import build_benchmark_model, task_of
    from hardnet_backbones.engine.config import load_config
    from hardnet_backbones.models import registry
    from hardnet_backbones.tasks import build_model_from_config, check_model_config

    @registry.register_model('segmentation')
    def probe_segmenter(*, num_classes: int = 21, weights_backbone=None, width: int = 4) -> nn.Module:
        return nn.Conv2d(3, num_classes, 1)

    try:
        cfg = load_config(None, ['task=segmentation', 'model.name=probe_segmenter', 'model.kwargs={width: 8}'])
        check_model_config(cfg)
        assert build_model_from_config(cfg, num_classes=3).out_channels == 3
        assert task_of('probe_segmenter') == 'segmentation'
        assert build_benchmark_model('probe_segmenter').out_channels == 21
        bad = load_config(None, ['task=segmentation', 'model.name=probe_segmenter', 'model.kwargs={widht: 8}'])
        with pytest.raises(ValueError, match="did you mean 'width'"):
            check_model_config(bad)
    finally:
        del registry._MODELS['probe_segmenter']
