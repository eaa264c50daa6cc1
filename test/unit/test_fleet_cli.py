"""urcdc-fleet-eval without a cluster: bag lists, shard identity, bad input exits 2."""
import os

import pytest

pytest.importorskip('pyarrow')

from urcdc_depth_ros.errors import ConfigError  # noqa: E402
from urcdc_depth_ros.evaluation.fleet import main  # noqa: E402
from urcdc_depth_ros.evaluation.fleet_shards import Shard, expand_bags  # noqa: E402


def _bag(path):
    os.makedirs(path)
    open(os.path.join(path, 'metadata.yaml'), 'w').close()
    return str(path)


def test_bags_come_from_folders_globs_and_list_files(tmp_path):
    a = _bag(tmp_path / 'fleet' / 'a')
    b = _bag(tmp_path / 'fleet' / 'b')
    c = _bag(tmp_path / 'other' / 'c')
    listing = tmp_path / 'bags.txt'
    listing.write_text(f'# one a line\n{c}\n\n{a}\n')
    assert expand_bags([str(tmp_path / 'fleet')]) == [a, b]          # folder of bags
    assert expand_bags([str(tmp_path / '*' / 'c')]) == [c]           # glob
    assert expand_bags([f'@{listing}', a]) == [c, a]                 # list, duplicates once
    with pytest.raises(ConfigError, match='matches no bag'):
        expand_bags([str(tmp_path / 'nothing*')])


def test_shard_id_changes_with_range_and_model_but_not_between_runs():
    s = Shard('/x/bag', 0, 32, 'model-a')
    assert s.shard_id == Shard('/x/bag', 0, 32, 'model-a').shard_id
    assert s.shard_id.startswith('bag_000000_')
    assert len({s.shard_id, Shard('/x/bag', 32, 64, 'model-a').shard_id,
                Shard('/x/bag', 0, 32, 'model-b').shard_id}) == 3


@pytest.mark.parametrize('extra, message', [
    (['--model', 'missing.onnx'], 'not readable'),
    (['--model', 'm.onnx', '--workers', '0'], '--workers 0'),
    (['--model', 'm.onnx', '--shard-frames', '0'], '--shard-frames 0'),
])
def test_bad_input_exits_2_naming_the_problem(tmp_path, caplog, monkeypatch, extra, message):
    (tmp_path / 'm.onnx').write_bytes(b'x')
    monkeypatch.chdir(tmp_path)
    assert main([_bag(tmp_path / 'bag'), '--out', str(tmp_path / 'out'), *extra]) == 2
    assert message in caplog.text
