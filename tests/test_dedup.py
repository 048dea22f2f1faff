"""The dedup cache's lookup against a plain Python set of the remembered keys: several runs, arrival order shuffled,
hits, misses, corrections and hash collisions."""

from __future__ import annotations

import numpy as np

from lccm.store.writer import ReadingColumns
from lccm.stream.dedup import KEY_BYTES, Keys, RecentReadings


def _cols(device: np.ndarray, metric: np.ndarray, ts: np.ndarray, value: np.ndarray) -> ReadingColumns:
    n = len(device)
    return ReadingColumns(
        device_id=device.astype(np.int32),
        metric_id=metric.astype(np.int16),
        ts_us=ts.astype(np.int64),
        value=value.astype(np.float64),
        seq=np.zeros(n, np.int64),
        received_at_us=np.zeros(n, np.int64),
    )


def _rows(keys: Keys) -> list[tuple[int, int, int, int]]:
    return list(zip(keys.dm.tolist(), keys.ts.tolist(), keys.vb.tolist(), keys.h.tolist(), strict=True))


def test_lookup_matches_a_set_of_the_remembered_readings_across_runs() -> None:
    rng = np.random.default_rng(7)
    cache = RecentReadings(100_000 * KEY_BYTES)
    remembered: set[tuple[int, int, int]] = set()
    batches = []
    for b in range(12):  # 12 batches of 500: the cache keeps them in several runs of different sizes
        n = 500
        cols = _cols(
            rng.integers(1, 50, n), rng.integers(1, 6, n), (b * 1000 + rng.permutation(1000)[:n]) * 1_000_000,
            rng.integers(0, 3, n) * 0.5,
        )  # fmt: skip
        keys = Keys.of(cols)
        cache.remember(keys)
        remembered.update((dm, ts, vb) for dm, ts, vb, _ in _rows(keys))
        batches.append(cols)
    assert len(cache._runs) > 1
    old = batches[2]
    mixed = _cols(
        np.concatenate([old.device_id, old.device_id, batches[11].device_id, rng.integers(1, 50, 300)]),
        np.concatenate([old.metric_id, old.metric_id, batches[11].metric_id, rng.integers(1, 6, 300)]),
        np.concatenate([old.ts_us, old.ts_us, batches[11].ts_us, rng.integers(0, 20_000, 300) * 1_000_000]),
        np.concatenate([old.value, old.value + 1.0, batches[11].value, rng.integers(0, 3, 300) * 0.5]),
    )  # repeats of an old run, corrections of it (another value), repeats of the newest run, random keys
    order = rng.permutation(len(mixed))
    keys = Keys.of(mixed).take(order)
    expected = np.array([(dm, ts, vb) in remembered for dm, ts, vb, _ in _rows(keys)])
    assert expected.any() and not expected.all()
    assert (cache.contains(keys) == expected).all()


def test_colliding_hashes_are_told_apart_by_the_full_key_in_any_order() -> None:
    cache = RecentReadings(100 * KEY_BYTES)
    h = np.full(3, 42, dtype=np.uint64)
    stored = Keys(h, np.array([1, 2, 3], np.uint64), np.array([10, 10, 10], np.uint64), np.array([5, 5, 5], np.uint64))
    cache.remember(stored)
    probe = Keys(
        np.array([42, 42, 42, 43], np.uint64),
        np.array([3, 4, 1, 1], np.uint64),
        np.array([10, 10, 10, 10], np.uint64),
        np.array([5, 5, 5, 5], np.uint64),
    )
    assert cache.contains(probe).tolist() == [True, False, True, False]
    assert cache.contains(probe.take(np.array([3, 2, 1, 0]))).tolist() == [False, True, False, True]
