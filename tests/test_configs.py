"""Configs that inherit: merging, errors, the shipped same-recipe twins, overrides and resume on merged configs."""
from pathlib import Path

import pytest
import yaml

from hardnet_backbones.engine.config import ConfigError, config_to_dict, load_config, read_config_file
from hardnet_backbones.engine.resume import check_resume_changes
from hardnet_backbones.models import TORCHVISION_PREFIX

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / 'configs').glob('*/*.yaml'))


def _write(path: Path, values) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values))
    return path


def test_a_config_inherits_its_bases_key_by_key(tmp_path):
    data = {'format': 'shapes', 'num_workers': 4, 'crop_size': [64, 64]}
    _write(tmp_path / '_base_' / 'data.yaml', {'task': 'segmentation', 'data': data})
    _write(tmp_path / '_base_' / 'schedule.yaml', {'train': {'epochs': 3, 'lr': 0.1}, 'data': {'num_workers': 3}})
    child = _write(tmp_path / 'seg' / 'run.yaml', {
        'base': ['../_base_/data.yaml', '../_base_/schedule.yaml'],
        'model': {'name': 'fcn_hardnet39ds'}, 'train': {'lr': 0.5}, 'data': {'crop_size': [96, 96]}})
    cfg = load_config(child, ['train.epochs=7'])
    assert cfg.task == 'segmentation' and cfg.model.name == 'fcn_hardnet39ds'
    assert cfg.data.format == 'shapes' and cfg.data.crop_size == (96, 96)  # lists are replaced, not merged
    assert cfg.data.num_workers == 3  # the later base wins over the earlier one
    assert (cfg.train.lr, cfg.train.epochs) == (0.5, 7)  # the file over its bases, --set over the file
    assert 'base' not in read_config_file(child)


def test_bases_chain_and_their_errors_name_the_file(tmp_path):
    _write(tmp_path / 'a.yaml', {'train': {'epochs': 2}})
    _write(tmp_path / 'b.yaml', {'base': 'a.yaml', 'train': {'lr': 0.2}})
    assert load_config(_write(tmp_path / 'c.yaml', {'base': 'b.yaml'})).train.epochs == 2
    with pytest.raises(ConfigError, match=r'config file not found: .*missing\.yaml'):
        load_config(_write(tmp_path / 'd.yaml', {'base': 'missing.yaml'}))
    _write(tmp_path / 'x.yaml', {'base': 'y.yaml'})
    with pytest.raises(ConfigError, match='the base configs form a cycle'):
        load_config(_write(tmp_path / 'y.yaml', {'base': 'x.yaml'}))
    with pytest.raises(ConfigError, match='base: expected a config path or a list of them'):
        load_config(_write(tmp_path / 'e.yaml', {'base': {'file': 'a.yaml'}}))
    with pytest.raises(ConfigError, match=r'unknown config key\(s\) in "train": epoch'):
        load_config(_write(tmp_path / 'f.yaml', {'base': 'a.yaml', 'train': {'epoch': 3}}))


def _is_torchvision(path: Path) -> bool:
    return read_config_file(path)['model']['name'].startswith(TORCHVISION_PREFIX)


def _twins():
    """(torchvision config, HarDNet config) pairs: same folder, same data and head prefix
    (``shapes_voc_``, ``shapes_lraspp_``, ...), one on each side."""
    def prefix(path: Path):
        return path.parent, path.name.split('_')[:2]
    return [(theirs, ours) for theirs in SHIPPED if _is_torchvision(theirs)
            for ours in SHIPPED if prefix(ours) == prefix(theirs) and not _is_torchvision(ours)]


@pytest.mark.parametrize('theirs, ours', _twins(), ids=lambda p: p.stem)
def test_same_recipe_twins_differ_only_in_model_and_output_dir(theirs, ours):
    a, b = config_to_dict(load_config(theirs)), config_to_dict(load_config(ours))
    assert {k for k in a if a[k] != b[k]} == {'model', 'output_dir'}
    assert {k for k in a['model'] if a['model'][k] != b['model'][k]} == {'name'}
    # each twin says only what differs: its bases, model and output_dir
    for path in (theirs, ours):
        assert set(yaml.safe_load(path.read_text())) == {'base', 'model', 'output_dir'}, path.name


def test_the_twins_are_found():
    assert len(_twins()) >= 4


def test_resume_compares_merged_configs(tmp_path):
    base = _write(tmp_path / 'base.yaml', {'task': 'detection', 'train': {'lr': 0.1, 'epochs': 2}})
    run = _write(tmp_path / 'run.yaml', {'base': 'base.yaml', 'model': {'name': 'ssdlite320_hardnet39ds'}})
    stored = config_to_dict(load_config(run))
    assert check_resume_changes(stored, load_config(run, ['train.epochs=4']), 2) == {'train.epochs': (2, 4)}
    _write(tmp_path / 'base.yaml', {'task': 'detection', 'train': {'lr': 0.3, 'epochs': 2}})  # a base changed
    with pytest.raises(ConfigError, match=r'train\.lr: 0\.1 -> 0\.3'):
        check_resume_changes(stored, load_config(run), 2)
    assert base.is_file()
