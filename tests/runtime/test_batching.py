"""Splitting and padding to an engine's batch sizes (runtime/backends/batching.py),
against a brute-force reference."""

import itertools
from functools import lru_cache

import numpy as np
import pytest

from fakedet.errors import BackendError
from fakedet.runtime.backends.batching import Run, fits, plan_runs


def _allowed(ranges, upto):
    return [s for s in range(1, upto + 1) if any(lo <= s and (hi is None or s <= hi) for lo, hi in ranges)]


def fewest_runs(n, ranges):
    """Brute force: the fewest engine runs that cover n images (a run of size s takes up
    to s images; the rest of it is padding)."""
    sizes = _allowed(ranges, n + max(lo for lo, _ in ranges))

    @lru_cache(maxsize=None)
    def best(left):
        if left <= 0:
            return 0
        return 1 + min(best(left - s) for s in sizes)

    return best(n)


@pytest.mark.parametrize("n, ranges, expected", [
    (6, [(4, 4)], [Run(4, 4), Run(2, 4)]),  # an ONNX with batch 4
    (3, [(1, None)], [Run(3, 3)]),  # dynamic batch: one run
    (12, [(1, 8), (16, 32)], [Run(12, 16)]),  # in a gap between two profiles: padded up
    (40, [(1, 8), (16, 32)], [Run(32, 32), Run(8, 8)]),
    (1, [(2, 8)], [Run(1, 2)]),  # below the profile's min
    (20, [(1, 8)], [Run(8, 8), Run(8, 8), Run(4, 4)]),
])
def test_known_plans(n, ranges, expected):
    assert plan_runs(n, ranges) == expected


def test_against_the_brute_force_reference():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(300):
        ranges = []
        for _ in range(rng.integers(1, 4)):
            lo = int(rng.integers(1, 12))
            ranges.append((lo, None if rng.random() < 0.15 else lo + int(rng.integers(0, 10))))
        for n in range(1, 45):
            runs = plan_runs(n, ranges)
            assert sum(r.count for r in runs) == n
            assert all(fits(r.size, ranges) and r.size >= r.count >= 1 for r in runs)
            assert all(r.padding == 0 for r in runs[:-1])  # only the last run is padded
            assert len(runs) == fewest_runs(n, ranges), (n, ranges, runs)
            if runs[-1].padding:  # padded only where no size the engine takes equals what is left
                assert not fits(runs[-1].count, ranges)
            checked += 1
    assert checked == 300 * 44


@pytest.mark.parametrize("n, ranges, problem", [
    (0, [(1, None)], "at least one image"),
    (3, [], "no batch size"),
    (3, [(0, 4)], "invalid batch range"),
    (3, [(5, 4)], "invalid batch range"),
])
def test_refusals(n, ranges, problem):
    with pytest.raises(BackendError, match=problem):
        plan_runs(n, ranges)


def test_fits():
    ranges = [(1, 8), (16, None)]
    assert [s for s in itertools.chain(range(1, 20)) if not fits(s, ranges)] == list(range(9, 16))
