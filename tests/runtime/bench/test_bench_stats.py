"""Bench statistics against numpy on known samples."""

import numpy as np
import pytest

from fakedet.runtime.bench import stats as st
from fakedet.runtime.bench import measure, summarize

SAMPLES = [
    [5.0],
    [1.0, 2.0],
    [3.0, 1.0, 2.0, 10.0],
    list(np.random.default_rng(0).exponential(4.0, 101)),
    list(np.random.default_rng(1).lognormal(1.0, 0.5, 1000)),
]


@pytest.mark.parametrize("xs", SAMPLES)
@pytest.mark.parametrize("q", [0, 1, 25, 50, 75, 90, 99, 99.9, 100])
def test_percentile_matches_numpy(xs, q):
    assert st.percentile(xs, q) == pytest.approx(np.percentile(xs, q), rel=1e-12, abs=1e-12)


def test_known_values():
    assert st.percentile([1, 2, 3, 4], 50) == 2.5
    assert st.percentile(range(1, 101), 99) == pytest.approx(99.01)
    assert st.median([7, 1, 3]) == 3
    with pytest.raises(ValueError):
        st.percentile([], 50)
    with pytest.raises(ValueError):
        st.percentile([1.0], 101)


def test_spread_and_latency_summary():
    xs = [10.0, 12.0, 11.0, 30.0, 9.0]
    s = st.Spread.of(xs)
    assert s.median == np.median(xs) and s.min == 9.0 and s.max == 30.0
    assert s.iqr == pytest.approx(np.percentile(xs, 75) - np.percentile(xs, 25))
    lat = st.latency_summary(xs)
    assert lat["p90"] == pytest.approx(np.percentile(xs, 90)) and lat["max"] == 30.0
    assert lat["mean"] == pytest.approx(np.mean(xs)) and lat["count"] == 5
    assert st.median_or_none([None, None]) is None and st.median_or_none([None, 2.0, 4.0]) == 3.0


def test_summarize_known_iterations():
    # two repeats, batch 4: throughput = 4 * iterations / wall seconds
    runs = [
        [{"compute": 1.0, "h2d": None, "end_to_end": 2.0}, {"compute": 3.0, "h2d": None, "end_to_end": 4.0,
                                                            "_wall_s": 0.5}],
        [{"compute": 2.0, "h2d": None, "end_to_end": 6.0}, {"compute": 2.0, "h2d": None, "end_to_end": 8.0,
                                                            "_wall_s": 0.25}],
    ]
    s = summarize(runs, 4)
    assert s["throughput_img_s"]["repeats"] == [16.0, 32.0] and s["throughput_img_s"]["median"] == 24.0
    assert s["latency_ms"]["p50"] == np.percentile([2, 4, 6, 8], 50)
    assert s["latency_p50_ms_repeats"]["repeats"] == [3.0, 7.0]
    assert s["split_ms"]["compute"] == 2.0 and s["split_ms"]["h2d"] is None and s["split_ms"]["d2h"] is None
    assert s["iterations"] == 4


def test_measure_runs_warmup_and_min_iterations():
    calls = []

    def step():
        calls.append(1)
        return {"compute": 0.1}

    runs = measure(step, warmup_s=0.0, duration_s=0.0, repeats=3, min_iterations=2)
    assert len(runs) == 3 and all(len(r) == 2 for r in runs)
    assert len(calls) == 1 + 6  # one warm-up call, then 2 per repeat
    assert all("_wall_s" in r[-1] and all("end_to_end" in it for it in r) for r in runs)
