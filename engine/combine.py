"""Combining bucket results: devices into sites or the city, fine buckets into coarse ones, two batches into one.

Every bucket result (:class:`engine.buckets.IntervalBuckets`, :class:`engine.rollups.SampleStats`,
:class:`engine.emissions.EmissionBuckets`, :class:`engine.streetlights.LampBuckets`) is a frozen dataclass whose
first field is ``edges_us`` and whose other fields are ``[bucket, device]`` arrays; its ``OPS`` class attribute says
how each field combines:

- ``sum``: added (amounts, kgCO2e, counts, microseconds);
- ``min`` / ``max``: the extreme;
- ``worst``: the highest quality flag among the members that were touched (``count`` > 0); Q_MISSING if none was.
  An untouched member does not spoil the others: that is what ``covered_us`` is for;
- ``last`` / ``last_ts``: the value with the latest timestamp (a tie goes to the later member);
- ``cover``: covered microseconds: added over buckets and batches, the minimum over devices (a site is only as
  complete as its least complete device).

All three operations are exact regroupings of the same sums, so a month from days equals a month computed directly
(up to float summation order), and merging the results of two disjoint batches equals one result over both.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np

from lccm.engine.kernels import NO_TS, Q_MISSING


class BucketResult(Protocol):
    OPS: ClassVar[dict[str, str]]

    @property
    def edges_us(self) -> np.ndarray: ...


R = TypeVar("R", bound=BucketResult)


def _fields(x: Any) -> dict[str, np.ndarray]:
    return {f.name: getattr(x, f.name) for f in dataclasses.fields(x) if f.name != "edges_us"}


def _identity(a: np.ndarray, axis: int, op: str) -> np.ndarray:
    """What an op gives over no members at all."""
    shape = a.shape[:axis] + a.shape[axis + 1 :]
    fill = {"min": np.inf, "max": -np.inf, "worst": Q_MISSING, "last_ts": NO_TS, "last": np.nan}.get(op, 0)
    return np.full(shape, fill, dtype=a.dtype)


def _reduce_group(x: Any, members: np.ndarray, axis: int, cover_op: str) -> dict[str, np.ndarray]:
    """Reduce the members (indices along ``axis``) of every field into one slice."""
    f = {name: np.take(a, members, axis=axis) for name, a in _fields(x).items()}
    out: dict[str, np.ndarray] = {}
    for name, op in x.OPS.items():
        a = f[name]
        if op == "cover":
            op = cover_op
        if members.size == 0:
            out[name] = _identity(a, axis, op)
        elif op == "sum":
            out[name] = a.sum(axis=axis, dtype=a.dtype)
        elif op == "min":
            out[name] = a.min(axis=axis)
        elif op in ("max", "last_ts"):
            out[name] = a.max(axis=axis)
        elif op == "worst":
            w = np.where(f["count"] > 0, a, -1).max(axis=axis)
            out[name] = np.where(w < 0, Q_MISSING, w).astype(a.dtype)
        elif op == "last":
            ts = f["last_ts_us"]
            rev = np.flip(ts, axis=axis)  # argmax takes the first maximum: flip so a tie goes to the later member
            pick = ts.shape[axis] - 1 - np.argmax(rev, axis=axis)
            out[name] = np.take_along_axis(a, np.expand_dims(pick, axis), axis=axis).squeeze(axis)
        else:
            raise ValueError(f"unknown op {op!r}")
    return out


def regroup_devices(x: R, group_of_device: np.ndarray, n_groups: int) -> R:
    """Devices into groups (sites, the city, emission source classes): ``group_of_device[d]`` in 0..n_groups-1, or -1
    to leave device d out. The result's device axis is the group index."""
    g = np.asarray(group_of_device, dtype=np.int64)
    n_dev = next(iter(_fields(x).values())).shape[1]
    if g.shape != (n_dev,):
        raise ValueError(f"group_of_device must have one entry per device ({n_dev})")
    if g.size and (g.max() >= n_groups or g.min() < -1):
        raise ValueError("group index outside -1..n_groups-1")
    cols = [_reduce_group(x, np.flatnonzero(g == j), axis=1, cover_op="min") for j in range(n_groups)]
    return dataclasses.replace(x, **{name: np.stack([c[name] for c in cols], axis=1) for name in x.OPS})  # type: ignore[type-var]


def coarsen_buckets(x: R, coarse_edges_us: np.ndarray) -> R:
    """Fine buckets into coarse ones (minutes -> 15 min -> hours, days -> months -> fiscal years). Every coarse edge
    must be one of the fine edges."""
    ce = np.asarray(coarse_edges_us, dtype=np.int64)
    fe = x.edges_us
    pos = np.searchsorted(fe, ce)
    if ce.shape[0] < 2 or np.any(pos >= fe.shape[0]) or np.any(fe[np.minimum(pos, fe.shape[0] - 1)] != ce):
        raise ValueError("coarse edges must be at least two of the fine edges")
    if np.any(np.diff(pos) <= 0):
        raise ValueError("coarse edges must be strictly increasing")
    rows = [_reduce_group(x, np.arange(pos[j], pos[j + 1]), axis=0, cover_op="sum") for j in range(ce.shape[0] - 1)]
    fields = {name: np.stack([r[name] for r in rows], axis=0) for name in x.OPS}
    return dataclasses.replace(x, edges_us=ce, **fields)  # type: ignore[type-var]


def merge(a: R, b: R) -> R:
    """Two results over the same edges and devices (two batches of disjoint rows) as one."""
    if type(a) is not type(b) or not np.array_equal(a.edges_us, b.edges_us):
        raise ValueError("merge needs two results of one type over the same edges")
    fa, fb = _fields(a), _fields(b)
    out: dict[str, np.ndarray] = {}
    for name, op in a.OPS.items():
        x, y = fa[name], fb[name]
        if op in ("sum", "cover"):
            out[name] = x + y
        elif op == "min":
            out[name] = np.minimum(x, y)
        elif op in ("max", "last_ts"):
            out[name] = np.maximum(x, y)
        elif op == "worst":
            tx = np.where(fa["count"] > 0, x, -1)
            ty = np.where(fb["count"] > 0, y, -1)
            w = np.maximum(tx, ty)
            out[name] = np.where(w < 0, Q_MISSING, w).astype(x.dtype)
        elif op == "last":
            out[name] = np.where(fb["last_ts_us"] >= fa["last_ts_us"], y, x)
        else:
            raise ValueError(f"unknown op {op!r}")
    return dataclasses.replace(a, **out)  # type: ignore[type-var]
