"""Progress bars: tqdm's redrawn frames on a terminal, a few whole lines in a log."""
import io

from urcdc_depth_ros.progress import progress_bar


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_one_line_per_ten_percent_and_no_carriage_returns():
    log = io.StringIO()
    assert sum(progress_bar(range(1000), file=log, desc='work', mininterval=0)) == 499500
    lines = log.getvalue().splitlines()
    assert '\r' not in log.getvalue()
    assert 10 <= len(lines) <= 12  # 0 %, 10 %, ..., 100 %
    assert lines[0].startswith('work:   0%') and '1000/1000' in lines[-1]
    # the same loop on a terminal redraws one line many times (what floods a log)
    tty = FakeTerminal()
    for _ in progress_bar(range(1000), file=tty, mininterval=0):
        pass
    assert tty.getvalue().count('\r') > 100 > len(log.getvalue()) / 100


def test_unknown_totals_and_manual_updates_print_by_time_and_end_with_the_count():
    log = io.StringIO()
    bar = progress_bar(file=log, unit='step', every_s=0.0, mininterval=0)
    for _ in range(5):
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 6 and lines[-1].startswith('5step')  # start + one per update
    silent = io.StringIO()
    bar = progress_bar(range(3), file=silent, disable=True)
    assert list(bar) == [0, 1, 2] and silent.getvalue() == ''
