"""Deterministic, random-access noise: the same (seed, key, time) always gives the same number.

The physical models are pure functions of time, so a reading at 10:00 does not depend on when the run started or on
which other devices run beside it. Counter-based hashing (splitmix64) gives that without any stored random state.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 2.0**-53


def stable_key(*parts: object) -> int:
    """A 64-bit key from any printable parts; unlike hash() it does not change between processes."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def _splitmix(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    # Arrays only: numpy warns on scalar uint64 overflow, and the wrap-around is the whole point here.
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def uniform(key: int, index: ArrayLike) -> FloatArray:
    """Uniform [0, 1) numbers, one per integer index, fixed by key."""
    idx = np.atleast_1d(np.asarray(index, dtype=np.int64)).astype(np.uint64)
    k = np.full(idx.shape, key & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)
    h = _splitmix(k ^ _splitmix(idx))
    return (h >> np.uint64(11)).astype(np.float64) * _TO_UNIT


def smooth(key: int, t_s: ArrayLike, period_s: float) -> FloatArray:
    """Smooth noise in [-1, 1): random knots every period_s, eased in between (weather-like wander)."""
    x = np.atleast_1d(np.asarray(t_s, dtype=np.float64)) / period_s
    i = np.floor(x)
    f = x - i
    a = uniform(key, i)
    b = uniform(key, i + 1)
    ease = f * f * (3.0 - 2.0 * f)
    return 2.0 * (a + (b - a) * ease) - 1.0


def normal(key: int, index: ArrayLike) -> FloatArray:
    """Approximately standard normal numbers (sum of four uniforms, rescaled): cheap and bounded at ±3.5."""
    idx = np.atleast_1d(np.asarray(index, dtype=np.int64))
    total = np.zeros(idx.shape, dtype=np.float64)
    for lane in range(4):
        total += uniform(key ^ (0x5851F42D4C957F2D * (lane + 1) & 0xFFFFFFFFFFFFFFFF), idx)
    return (total - 2.0) * np.sqrt(3.0)


_M64 = 0xFFFFFFFFFFFFFFFF


def _splitmix_int(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def uniform_scalar(key: int, index: int) -> float:
    """Same numbers as uniform(key, [index]) without numpy's per-call overhead (hot per-message paths)."""
    h = _splitmix_int((key & _M64) ^ _splitmix_int(index & _M64))
    return (h >> 11) * _TO_UNIT
