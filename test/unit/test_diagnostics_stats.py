"""diagnostics: sliding-window rates, latency percentiles and thread-safe counters."""
from __future__ import annotations

import math
import threading

import pytest

from urcdc_depth_ros.diagnostics import LatencyStats, NodeStats, RateMeter


def test_rate_of_regular_ticks_is_their_frequency():
    r = RateMeter(window_s=2.0)
    for i in range(100):
        r.tick(i * 0.05)  # 20 Hz for 5 s
    assert r.rate_hz(4.95) == pytest.approx(20.0, rel=1e-6)


def test_rate_forgets_events_older_than_the_window():
    r = RateMeter(window_s=1.0)
    for i in range(10):
        r.tick(i * 0.1)
    assert r.rate_hz(0.95) > 0
    assert r.rate_hz(5.0) == 0.0


def test_rate_rejects_a_non_positive_window():
    with pytest.raises(ValueError):
        RateMeter(0.0)


def test_latency_percentiles_over_the_last_samples():
    s = LatencyStats(size=100)
    assert math.isnan(s.percentile(50))
    for v in range(1000):
        s.add(v)
    assert len(s) == 100  # only the newest 100 (900..999)
    assert s.percentile(50) == pytest.approx(949.5)
    assert s.percentile(95) == pytest.approx(994.05)


def test_node_stats_summary_counts_and_rejects_with_reason():
    st = NodeStats(window_s=10.0)
    for i in range(5):
        st.input_tick(i * 0.1)
    st.output_tick(0.5, latency_ms=12.0, backend_ms=10.0)
    st.reject('image', 'bad step')
    st.reject('camera_info', 'NaN K')
    st.count('dropped', 3)
    s = st.summary(0.5)
    assert (s['received'], s['processed'], s['dropped']) == (5, 1, 3)
    assert (s['rejected'], s['rejected_image'], s['rejected_camera_info']) == (2, 1, 1)
    assert s['last_error'] == 'NaN K' and s['latency_p50_ms'] == 12.0
    assert s['input_rate_hz'] == pytest.approx(4 / 0.5)


def test_node_stats_counters_are_exact_under_concurrent_writers():
    st = NodeStats()

    def work():
        for _ in range(5000):
            st.count('dropped')
            st.reject('image', 'x')

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert st.counts['dropped'] == 20000 and st.counts['rejected'] == 20000
