"""The fleet report in headless Chromium: loads without console errors, every image renders,
the per-bag table sorts.

Needs Debian's ``chromium`` (``make test`` installs it when running as root). Without it the
test skips with a message, except under CI (``CI`` set), where a missing browser fails.
"""
import json
import os
import re
import shutil
import subprocess

import pytest

pytest.importorskip('pyarrow')
synthetic = pytest.importorskip('urcdc_training.synthetic')

from fixtures.fleet_oracle import OracleFactory  # noqa: E402

from urcdc_depth_ros.evaluation.fleet import merge_shards  # noqa: E402
from urcdc_depth_ros.evaluation.fleet_report import write_fleet_report  # noqa: E402
from urcdc_depth_ros.evaluation.fleet_shards import evaluate_shard, plan_shards  # noqa: E402
from urcdc_depth_ros.kitti.to_bag import convert_drive  # noqa: E402

CHECKER = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push('error: ' + (e.message || (e.target && e.target.src) || 'resource'));
}, true);
var __ce = console.error;
console.error = function () {
  window.__errors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
  __ce.apply(console, arguments);
};
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                   .map(function (i) { return i.alt; });
  var table = document.querySelector('table.sortable');
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var col = heads.findIndex(function (h) { return h.textContent === 'abs_rel'; });
  heads[col].click();
  var vals = Array.prototype.map.call(table.tBodies[0].rows, function (r) {
    return parseFloat(r.cells[col].getAttribute('data-v'));
  });
  var pre = document.createElement('pre');
  pre.id = 'check';
  pre.textContent = JSON.stringify({images: imgs.length, broken: broken,
                                    errors: window.__errors, sorted: vals});
  document.body.appendChild(pre);
});
</script>"""


def _chromium():
    exe = shutil.which('chromium') or shutil.which('chromium-browser')
    if exe is None:
        if os.environ.get('CI'):
            pytest.fail('CI must run the browser test: install Debian\'s chromium '
                        '(`make browser`, as root)')
        pytest.skip('no chromium on PATH; `make browser` (as root) installs Debian\'s chromium')
    return exe


@pytest.fixture(scope='module')
def fleet_out(tmp_path_factory):
    root = tmp_path_factory.mktemp('fleet_report')
    info = synthetic.generate_dataset(str(root / 'data'), drives=2, frames=4, seed=5,
                                      width=192, height=64, test_drives=1)
    drives = tuple(os.path.join(info.raw_path, info.date, d) for d in info.drives)
    bags = [convert_drive(d, str(root / f'bag{i}'), progress=False)['path']
            for i, d in enumerate(drives)]
    broken = root / 'broken'
    broken.mkdir()
    (broken / 'x.mcap').write_bytes(b'not a bag')
    out = str(root / 'out')
    shards, bad = plan_shards(bags + [str(broken)], 2, 'oracle')
    est = OracleFactory(drives, flicker=0.02)()
    for s in shards:   # in-process: the report does not care who evaluated the shards
        evaluate_shard(s, est, {}, out, n_panels=2)
    fleet = merge_shards(out, shards, bad)
    fleet['run'] = {'warnings': ['example warning']}
    write_fleet_report(out, fleet, n_panels=3)
    return out, fleet


def test_report_loads_without_errors_and_every_image_renders(fleet_out, tmp_path):
    exe = _chromium()
    out, fleet = fleet_out
    page = open(os.path.join(out, 'report.html')).read()
    assert '<head>' in page
    # the uncertainty table: the model beside the three baselines, and the calibration line
    for row in ('<td>uncertainty</td>', '<td>sigma = c · depth</td>', '<td>random order</td>',
                '<td>oracle (true error)</td>', 'Calibration error'):
        assert row in page, row
    probe = tmp_path / 'probe.html'
    probe.write_text(page.replace('<head>', '<head>' + CHECKER, 1))
    proc = subprocess.run([exe, '--headless', '--no-sandbox', '--disable-gpu',
                           '--disable-dev-shm-usage', '--enable-logging=stderr', '--v=0',
                           '--virtual-time-budget=10000', '--dump-dom', probe.as_uri()],
                          capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="check">(.*?)</pre>', proc.stdout, re.S)
    assert m, f'the page did not finish loading: {proc.stderr[-2000:]}'
    check = json.loads(m.group(1).replace('&quot;', '"').replace('&amp;', '&'))
    assert check['errors'] == [] and 'Uncaught' not in proc.stderr
    # stability plot + the worst 3 panels
    assert check['images'] == 4 and check['broken'] == []
    assert check['sorted'] == sorted(check['sorted']) and len(check['sorted']) == 2
    assert '<b>broken</b>' in page   # the failed bag is listed by name with its reason
    assert len(fleet['failed_bags']) == 1
