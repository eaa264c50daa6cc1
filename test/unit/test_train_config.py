"""TrainConfig <-> YAML, overrides, validation, shipped configs and the LR schedule."""
import os

import pytest

from urcdc_depth_ros.errors import ConfigError
from urcdc_training.config import TrainConfig
from urcdc_training.datasets import split_path
from urcdc_training.trainer import lr_at

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = ['train_kitti_eigen', 'train_kitti_official', 'train_nyu', 'train_synthetic']


def _cfg(name):
    return os.path.join(ROOT, 'config', f'{name}.yaml')


@pytest.mark.parametrize('name', CONFIGS)
def test_shipped_config_loads_and_round_trips_through_yaml(name):
    cfg = TrainConfig.load(_cfg(name))
    assert TrainConfig.from_yaml_text(cfg.to_yaml()) == cfg


@pytest.mark.parametrize('name, dataset, max_depth, size, min_gt, crop', [
    ('train_kitti_eigen', 'kitti', 80.0, (352, 1120), 1.0, 'garg'),
    ('train_nyu', 'nyu', 10.0, (480, 640), 0.1, 'nyu'),
])
def test_paper_configs_hold_the_published_recipe(name, dataset, max_depth, size, min_gt, crop):
    cfg = TrainConfig.load(_cfg(name))
    assert (cfg.variant, cfg.lr, cfg.end_lr_ratio, cfg.lr_power) == ('large07', 2e-5, 0.1, 0.9)
    assert (cfg.epochs, cfg.batch_size, cfg.parity, cfg.amp) == (50, 4, 'epoch', 'off')
    assert not cfg.pass_weight_decay_eps and (cfg.weight_decay, cfg.adam_eps) == (1e-2, 1e-3)
    assert cfg.dataset_kind == dataset and cfg.max_depth == max_depth
    assert (cfg.data.input_height, cfg.data.input_width) == size
    assert cfg.loss_min_depth_m() == min_gt and cfg.eval_crop_name() == crop


def test_bundled_split_prefix_resolves_to_the_packaged_list():
    cfg = TrainConfig.load(_cfg('train_kitti_eigen'))
    assert cfg.data.filenames_file == split_path('eigen_train_files_with_gt.txt')
    assert os.path.isfile(cfg.data.filenames_file)


def test_overrides_are_coerced_to_field_types_including_dotted_data_keys():
    cfg = TrainConfig.load(_cfg('train_synthetic'), [
        'lr=1e-4', 'max_steps=12', 'amp=bf16', 'eval_flip_tta=true',
        'data.input_height=160', 'data.gamma_range=[0.8, 1.2]', 'pretrained_swin=null'])
    assert cfg.lr == 1e-4 and isinstance(cfg.lr, float)  # YAML reads '1e-4' as a string
    assert cfg.max_steps == 12 and cfg.amp == 'bf16' and cfg.eval_flip_tta is True
    assert cfg.data.input_height == 160 and cfg.data.gamma_range == (0.8, 1.2)
    assert cfg.pretrained_swin is None


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown TrainConfig keys \['learning_rate'\].*'lr'"):
        TrainConfig.load(_cfg('train_synthetic'), ['learning_rate=1'])
    with pytest.raises(ConfigError, match=r"\['data.hieght'\].*'data.input_height'"):
        TrainConfig.load(_cfg('train_synthetic'), ['data.hieght=1'])


@pytest.mark.parametrize('override, needle', [
    ('amp=fp8', 'amp'), ('parity=random', 'parity'), ('batch_size=0', 'batch_size'),
    ('lr=fast', 'lr'), ('best_metrics=[abs_rel, accuracy]', 'accuracy'),
    ('resume=/no/such/file.pt', 'resume'), ('epochs=2.5', 'epochs'),
])
def test_bad_values_raise_config_error_naming_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle):
        TrainConfig.load(_cfg('train_synthetic'), [override])


def test_override_without_equals_sign_is_rejected():
    with pytest.raises(ConfigError, match='key=value'):
        TrainConfig.load(_cfg('train_synthetic'), ['lr'])


def test_missing_config_file_names_the_fix(tmp_path):
    with pytest.raises(ConfigError, match='--config'):
        TrainConfig.load(str(tmp_path / 'nope.yaml'))


def test_lr_schedule_is_polynomial_to_a_tenth():
    assert lr_at(0, 100, 2e-5) == pytest.approx(2e-5)
    assert lr_at(100, 100, 2e-5) == pytest.approx(2e-6)
    # half way: (2e-5 - 2e-6) * 0.5 ** 0.9 + 2e-6
    assert lr_at(50, 100, 2e-5) == pytest.approx(1.8e-5 * 0.5 ** 0.9 + 2e-6, rel=1e-12)
    assert lr_at(25, 100, 2e-5) > lr_at(26, 100, 2e-5)
