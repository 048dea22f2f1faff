"""The energy updater: drains the rollup queue, recomputes the touched 15-minute buckets from raw readings with the
engine, and stores energy and emissions (at the factor in force and at the base-year factor).

The live path and ``lccm recompute`` (:func:`stream.updaters.recompute`) are the same code: recompute just
enqueues a range and drains, so both give identical rows. Work is claimed and written in one transaction: if
anything fails, the queue rows come back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg

from lccm.engine.buckets import mark_incomplete
from lccm.engine.counters import CAP_TOLERANCE, LEARNED_HEADROOM, NO_TS, CounterState, MeterParams
from lccm.engine.emissions import factor_series
from lccm.engine.factors import SOURCE_CLASSES, TGO_REGISTRY, FactorRegistry, SourceClass
from lccm.engine.fused import CellSeed, RegisterBuckets, register_buckets
from lccm.store.connect import Connect
from lccm.store.energy import (
    BUCKET_US,
    BucketRows,
    CounterStateRows,
    MeterRow,
    Spans,
    bound_priors,
    bucket_ranges,
    claim_spans,
    counter_states,
    meters,
    reach_forward,
    replace_buckets,
    replace_counter_states,
    window_readings,
)
from lccm.stream.partitions import Leases, held_partitions

log = logging.getLogger(__name__)

ENERGY_METRIC = 1  # kWh register; the rated power (kW) bounds it only
FUEL_METRIC = 8  # litre register
# The plausibility bound of a meter with no rated power and no history, its own or its site's (cold start), per
# register metric; and how far back its own history is read. Settings, with these defaults: no public source gives
# them (docs/reference.md#plausibility-bound-of-a-register).
DEFAULT_BOUND_KW = 1000.0
DEFAULT_BOUND_LPH = 100.0
BOUND_HISTORY_DAYS = 28
# How many times a claim's bucket ranges are extended forward over stored readings that may still reach back into
# them (EnergyUpdater._store): each step passes a flat run and the reading that ends it, so more is a meter stuck
# again and again within the late-data horizon.
MAX_REACH_STEPS = 8

# What the energy updater keeps of a series' engine run at the live edge (migration 026): the counter's carried
# state after the last reading, then the cell of that reading's bucket. Packed little-endian, every bit kept (NaN
# registers too): a later claim hands them back to the engine as they were.
_STATE = np.dtype(
    [
        ("last_ts_us", "<i8"), ("last_register", "<f8"), ("anchor_ts_us", "<i8"), ("anchor_register", "<f8"),
        ("flat_ts_us", "<i8"), ("bound_per_h", "<f8"), ("tail_ts_us", "<i8"), ("tail_register", "<f8"),
        ("tail_n", "<i8"), ("tail_lo_per_h", "<f8"), ("tail_hi_per_h", "<f8"), ("run_hi_per_h", "<f8"),
        ("amount", "<f8"), ("amount_estimated", "<f8"), ("kgco2e", "<f8"), ("kgco2e_base", "<f8"),
        ("covered_us", "<i8"), ("count", "<i4"), ("quality", "<i1"),
    ]
)  # fmt: skip
_COUNTER_FIELDS = tuple(CounterState.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class UpdateResult:
    spans: int
    buckets: int


class EnergyUpdater:
    def __init__(
        self,
        connect: Connect,
        *,
        base_year_us: tuple[int, int],
        registry: FactorRegistry = TGO_REGISTRY,
        classes: Sequence[SourceClass] = SOURCE_CLASSES,
        claim_limit: int = 20_000,
        cell_budget: int = 4_000_000,
        default_bound_kw: float = DEFAULT_BOUND_KW,
        default_bound_lph: float = DEFAULT_BOUND_LPH,
        bound_history_days: int = BOUND_HISTORY_DAYS,
        leases: Leases | None = None,
        continue_stored: bool = True,
    ) -> None:
        self._connect = connect
        self._leases = leases  # None: every partition (one process, `lccm recompute`)
        self._base_year_us = base_year_us
        self._registry = registry
        self._classes = {c.key: c for c in classes}
        self._claim_limit = claim_limit
        self._cell_budget = cell_budget  # buckets x spans per engine call: bounds the dense result arrays
        self._default_bound = {ENERGY_METRIC: default_bound_kw, FUEL_METRIC: default_bound_lph}
        self._bound_history_days = bound_history_days
        # Continue a range's first bucket from the stored counter state of the last claim's run (the live path);
        # False reads every range whole (`lccm recompute`: rebuilds from raw readings, whatever is stored).
        self.continue_stored = continue_stored
        self.continued = 0  # ranges continued from a stored state since start (tests, benchmarks)

    def run_once(self) -> UpdateResult:
        with self._connect() as conn, conn.transaction():
            held = held_partitions(conn, self._leases)
            if held is not None and not held.partitions:
                return UpdateResult(0, 0)
            spans = claim_spans(conn, self._claim_limit, held=held)
            if not len(spans):
                return UpdateResult(0, 0)
            ranges, windows = bucket_ranges(conn, spans)
            if not (
                np.array_equal(ranges.device_id, spans.device_id) and np.array_equal(ranges.metric_id, spans.metric_id)
            ):
                raise RuntimeError("bucket_ranges must keep the spans' order")  # new_lo below is by position
            busy = np.flatnonzero(ranges.hi_us > ranges.lo_us)  # a lone first reading has no interval yet
            ranges, windows, new_lo = ranges.take(busy), windows.take(busy), spans.lo_us[busy]
            models = meters(conn, np.unique(ranges.device_id).tolist())
            stored = 0
            for chunk in chunks(ranges, self._cell_budget):
                stored += self._store(
                    conn, ranges.take(chunk), windows.take(chunk), models, MAX_REACH_STEPS, new_lo[chunk]
                )
        return UpdateResult(len(spans), stored)

    def drain(self, stop: Callable[[], bool] = lambda: False) -> UpdateResult:
        return drain(self.run_once, stop)

    def _store(
        self,
        conn: psycopg.Connection,
        ranges: Spans,
        windows: Spans,
        models: dict[int, MeterRow],
        steps: int,
        new_lo_us: np.ndarray | None = None,
    ) -> int:
        """Compute and store the buckets of the ranges; a range that a stored reading after its window may still
        reach back into is extended forward first (up to ``steps`` times) and computed again, on its own. A later
        reading's interval reaches back to the anchor of a suspect run open at the end of the window, or to the start
        of the flat run the window ends on (a stuck register's catch-up is spread from there, engine.counters rules
        5, 5b): computed without that reading, the range's buckets would hold measured zeros where the same readings
        at once give the catch-up's share (docs/partitions.md). ``new_lo_us``: the first new reading of each range's
        claimed span, where a stored counter state may be continued (None: read whole). Returns the rows stored."""
        rows, row_span, reach_us, (states, state_span), computed = self._compute(
            conn, ranges, windows, models, new_lo_us
        )
        moved = np.zeros(0, np.int64)
        short = np.flatnonzero(reach_us < ranges.hi_us) if steps > 0 else moved
        if short.size:
            longer, wider = reach_forward(conn, ranges.take(short), windows.take(short))
            # nothing stored after a window yet: a later reading's own claim looks back (bucket_ranges)
            on = wider.hi_us > windows.hi_us[short]
            moved, longer, wider = short[on], longer.take(np.flatnonzero(on)), wider.take(np.flatnonzero(on))
        kept = np.setdiff1d(np.arange(len(ranges)), moved)
        if moved.size:
            rows = rows.take(np.flatnonzero(np.isin(row_span, kept)))
        replace_buckets(conn, computed.take(kept), rows)
        replace_counter_states(conn, ranges.take(kept), states.take(np.flatnonzero(np.isin(state_span, kept))))
        stored = len(rows.device_id)
        if moved.size:
            for chunk in chunks(longer, self._cell_budget):
                stored += self._store(conn, longer.take(chunk), wider.take(chunk), models, steps - 1)
        return stored

    def _compute(
        self,
        conn: psycopg.Connection,
        ranges: Spans,
        windows: Spans,
        models: dict[int, MeterRow],
        new_lo_us: np.ndarray | None,
    ) -> tuple[BucketRows, np.ndarray, np.ndarray, tuple[CounterStateRows, np.ndarray], Spans]:
        """The buckets of the ranges, the range of each row, for each range the earliest time a later reading's
        interval may start at (the open suspect run's anchor, else the start of the flat run the window ends on),
        and the counter states to store of the ranges whose window ends at the series' last reading (with the range of
        each), and the ranges computed and stored (a continued one from the bucket of the state's last reading).

        A range whose previous claim's run read from the same first reading with the same model, stored every
        bucket from the range's start on and ended inside the range (store/energy.py: counter_states) is continued:
        the engine starts from that run's state and the cell of its last reading's bucket and reads only the readings
        after it. The engine carries a batch's state on bit for bit (engine.counters), and a cell receives its
        intervals in time order, so the rows are those of a whole read (benchmarks/README.md#the-databases-cpu-for-
        derived-data: with readings a second apart, a claim re-read up to 900 readings a meter for one or two new
        ones). The range's buckets before that one are left as that run stored them, which a whole read gives again
        when no later reading can reach back into them (_continued)."""
        params, classes = self._models(ranges, models, self._learned_bounds(conn, ranges))
        model = [self._model(params, classes, j) for j in range(len(ranges))]
        edges = np.arange(int(ranges.lo_us.min()), int(ranges.hi_us.max()) + BUCKET_US, BUCKET_US, dtype=np.int64)
        carried, seed, read_lo = CounterState.empty(len(ranges)), None, windows.lo_us.copy()
        computed_lo, range_lo = ranges.lo_us.copy(), ranges.lo_us.copy()
        if new_lo_us is not None and self.continue_stored:
            carried, seed, read_lo, computed_lo, range_lo = _continued(conn, ranges, windows, new_lo_us, model)
            self.continued += 0 if seed is None else len(seed.device)
        computed = Spans(ranges.device_id, ranges.metric_id, computed_lo, ranges.hi_us)
        span_idx, ts_us, value = window_readings(
            conn, Spans(windows.device_id, windows.metric_id, read_lo, windows.hi_us)
        )
        factors, series = factor_series(self._registry, classes)
        base_factors, base_series = factor_series(self._registry, classes, base_year_us=self._base_year_us)
        # counters, the 15-minute spread and both emissions in one pass (engine.fused: the pipeline's answer)
        out, state = register_buckets(
            span_idx, ts_us, value, params, edges, factors, series, base_factors, base_series, carried, seed=seed
        )
        kg, kg_base = out.kgco2e, out.kgco2e_base
        # A bucket that has ended before the meter's latest reading yet is not fully covered lost part of its energy
        # (no interval there: before the meter's first reading, or a gap the counter could not bridge): MISSING.
        # Buckets at the live edge stay as they are until a later reading closes them.
        latest_us = np.full(len(ranges), np.iinfo(np.int64).min, np.int64)
        np.maximum.at(latest_us, span_idx, ts_us)
        np.maximum(latest_us, carried.last_ts_us, out=latest_us)  # a continued run's readings before it were not read
        states = _live_edge_states(computed, range_lo, windows, edges, out, state, latest_us, model)
        energy = mark_incomplete(out.energy, latest_us)
        # Only a window that holds a reading at or after its range's end can have stored readings after it (it reads
        # up to the first one): at the live edge, which is nearly every claim, no look forward is needed.
        never = np.iinfo(np.int64).max
        reach_us = np.where(state.flat_ts_us == NO_TS, never, state.flat_ts_us)
        reach_us = np.where(state.anchor_ts_us == NO_TS, reach_us, np.minimum(reach_us, state.anchor_ts_us))
        reach_us = np.where(latest_us >= ranges.hi_us, reach_us, never)
        starts = edges[:-1, None]
        inside = (starts >= computed.lo_us[None, :]) & (starts < ranges.hi_us[None, :]) & (energy.count > 0)
        b, j = np.nonzero(inside)
        rows = BucketRows(
            device_id=ranges.device_id[j],
            metric_id=ranges.metric_id[j],
            bucket_start_us=edges[b],
            amount=energy.amount[b, j],
            amount_estimated=energy.amount_estimated[b, j],
            covered_s=energy.covered_us[b, j] / 1e6,
            quality=energy.quality[b, j].astype(np.int16),
            intervals=energy.count[b, j],
            kgco2e=kg[b, j],
            kgco2e_base=kg_base[b, j],
        )
        return rows, j, reach_us, states, computed

    def _model(self, params: MeterParams, classes: list[SourceClass | None], j: int) -> bytes:
        """What a range's engine run depends on besides its readings: the meter model, the learned bound it started
        from and the emission factors' series (source class and base year): a stored state is continued only under
        the same."""
        assert params.learned_per_h is not None  # _models sets it
        numbers = (
            np.array([params.learned_per_h[j], params.modulus[j], params.rated_per_h[j]], "<f8").tobytes()
            + np.array([params.cadence_us[j], *self._base_year_us], "<i8").tobytes()
        )
        cls = classes[j]
        return numbers + (cls.key.encode() if cls is not None else b"")

    def _learned_bounds(self, conn: psycopg.Connection, ranges: Spans) -> np.ndarray:
        """Each span's learned plausibility bound (kW or L/h): LEARNED_HEADROOM x its meter's robust peak over the
        history before the city's day the span starts in, or its site's where it has none, or the metric's default
        (cold start): the same for every span of the day, whichever claim it is in. The counter raises it if
        consistent readings show a higher load, and ignores it where the meter has a rated power.

        A raise earlier in the day is kept: a bucket of the day before the span over what the day's bound allows
        (its cap, CAP_TOLERANCE x the bound) holds a load the counter confirmed (rule 7; nothing else stores more),
        and a run through it went on with the raised bound, LEARNED_HEADROOM x that power; a claim starting after it
        does the same. docs/reference.md#plausibility-bound-of-a-register."""
        priors = bound_priors(conn, ranges, self._bound_history_days)
        peak = np.where(np.isfinite(priors.own), priors.own, priors.site)
        default = np.array([self._default_bound.get(int(m), 0.0) for m in ranges.metric_id.tolist()], np.float64)
        bound = np.where(np.isfinite(peak) & (peak > 0), LEARNED_HEADROOM * peak, default)
        raised = np.isfinite(priors.today) & (priors.today > CAP_TOLERANCE * bound * (1 + 1e-9))
        return np.where(raised, LEARNED_HEADROOM * priors.today, bound)

    def _models(
        self, ranges: Spans, models: dict[int, MeterRow], learned: np.ndarray
    ) -> tuple[MeterParams, list[SourceClass | None]]:
        n = len(ranges)
        modulus, rated, cadence = np.zeros(n), np.zeros(n), np.zeros(n, np.int64)
        classes: list[SourceClass | None] = []
        for j, (device, metric) in enumerate(zip(ranges.device_id.tolist(), ranges.metric_id.tolist(), strict=True)):
            m = models.get(device)
            cls = self._classes.get(m.source_class or "") if m else None
            classes.append(cls if cls is not None and cls.metric_id == metric else None)
            if m is None:
                continue
            modulus[j] = m.register_modulus or 0.0
            rated[j] = (m.rated_kw or 0.0) if metric == ENERGY_METRIC else 0.0
            cadence[j] = m.cadence_s * 1_000_000
        return MeterParams(modulus=modulus, rated_per_h=rated, cadence_us=cadence, learned_per_h=learned), classes


def _continued(
    conn: psycopg.Connection, ranges: Spans, windows: Spans, new_lo_us: np.ndarray, model: list[bytes]
) -> tuple[CounterState, CellSeed | None, np.ndarray, np.ndarray, np.ndarray]:
    """The carried state (empty where there is none to continue), the seeded cells, where each range's readings are
    to be read from (after the stored state's last reading, else the window's start), where its buckets are computed
    and stored from (the bucket of that reading, else the range's start) and the first bucket the rows stored for it
    come from one run (the stored state's, else the range's start).

    A range that starts before the state's bucket (its ranges reach back over a suspect bucket, say) is continued
    only if no later reading can reach back before that bucket: no suspect run open with its anchor before it, the
    flat run (where a held catch-up is anchored) starting in it or later, and no run of steps over the bound (which
    a confirmed load catches up from) begun before it. Then the rows before it are the ones its run stored."""
    n = len(ranges)
    carried = CounterState.empty(n)
    read_lo, computed_lo, range_lo = windows.lo_us.copy(), ranges.lo_us.copy(), ranges.lo_us.copy()
    found = [(i, lo, b, last, st) for i, lo, b, last, mo, st in counter_states(conn, ranges, windows.lo_us, new_lo_us)
             if mo == model[i] and len(st) == _STATE.itemsize]  # fmt: skip
    if not found:
        return carried, None, read_lo, computed_lo, range_lo
    packed = np.frombuffer(b"".join(f[4] for f in found), _STATE)
    idx, stored_lo, bucket, last = (np.array([f[c] for f in found], np.int64) for c in range(4))
    reach = np.minimum.reduce([
        np.where(packed["anchor_ts_us"] == NO_TS, bucket, packed["anchor_ts_us"]),
        np.where(packed["flat_ts_us"] == NO_TS, bucket, packed["flat_ts_us"]),
        np.where(packed["tail_n"] > 0, packed["tail_ts_us"], bucket),
    ])  # fmt: skip
    ok = np.flatnonzero((bucket == ranges.lo_us[idx]) | (reach >= bucket))
    if not ok.size:
        return carried, None, read_lo, computed_lo, range_lo
    packed, idx, stored_lo, bucket, last = packed[ok], idx[ok], stored_lo[ok], bucket[ok], last[ok]
    for f in _COUNTER_FIELDS:
        getattr(carried, f)[idx] = packed[f]
    read_lo[idx] = last + 1
    computed_lo[idx] = bucket
    range_lo[idx] = stored_lo
    seed = CellSeed(
        bucket_start_us=computed_lo[idx], device=idx, amount=packed["amount"].astype(np.float64),
        amount_estimated=packed["amount_estimated"].astype(np.float64), kgco2e=packed["kgco2e"].astype(np.float64),
        kgco2e_base=packed["kgco2e_base"].astype(np.float64), covered_us=packed["covered_us"].astype(np.int64),
        count=packed["count"].astype(np.int32), quality=packed["quality"].astype(np.int8),
    )  # fmt: skip
    return carried, seed, read_lo, computed_lo, range_lo


def _live_edge_states(
    ranges: Spans,
    range_lo_us: np.ndarray,
    windows: Spans,
    edges: np.ndarray,
    out: RegisterBuckets,
    state: CounterState,
    latest_us: np.ndarray,
    model: list[bytes],
) -> tuple[CounterStateRows, np.ndarray]:
    """The counter states to store, and the range of each: of each range whose window holds no reading at or after
    the range's end (it read up to the series' last reading, nearly every claim at the live edge), the engine's state
    after that reading and the cell of its bucket as the engine left it (before mark_incomplete, which never touches
    the live edge's)."""
    at = (latest_us // BUCKET_US) * BUCKET_US
    j = np.flatnonzero((latest_us < ranges.hi_us) & (at >= ranges.lo_us))
    b = (at[j] - edges[0]) // BUCKET_US
    packed = np.zeros(len(j), _STATE)
    for f in _COUNTER_FIELDS:
        packed[f] = getattr(state, f)[j]
    e = out.energy
    packed["amount"], packed["amount_estimated"] = e.amount[b, j], e.amount_estimated[b, j]
    packed["kgco2e"], packed["kgco2e_base"] = out.kgco2e[b, j], out.kgco2e_base[b, j]
    packed["covered_us"], packed["count"], packed["quality"] = e.covered_us[b, j], e.count[b, j], e.quality[b, j]
    return CounterStateRows(
        device_id=ranges.device_id[j], metric_id=ranges.metric_id[j], range_lo_us=range_lo_us[j], bucket_start_us=at[j],
        window_lo_us=windows.lo_us[j], last_ts_us=latest_us[j], model=[model[i] for i in j.tolist()],
        state=[p.tobytes() for p in packed],
    ), j  # fmt: skip


def chunks(ranges: Spans, cell_budget: int) -> Iterator[np.ndarray]:
    """Groups of spans, in time order, whose dense (buckets x spans) arrays stay within the budget."""
    chunk: list[int] = []
    lo = hi = 0
    for j in np.argsort(ranges.lo_us, kind="stable").tolist():
        lo_j, hi_j = int(ranges.lo_us[j]), int(ranges.hi_us[j])
        new_lo, new_hi = (min(lo, lo_j), max(hi, hi_j)) if chunk else (lo_j, hi_j)
        if chunk and ((new_hi - new_lo) // BUCKET_US + 1) * (len(chunk) + 1) > cell_budget:
            yield np.array(chunk)
            chunk, new_lo, new_hi = [], lo_j, hi_j
        chunk.append(j)
        lo, hi = new_lo, new_hi
    if chunk:
        yield np.array(chunk)


def drain(run_once: Callable[[], UpdateResult], stop: Callable[[], bool] = lambda: False) -> UpdateResult:
    """Run an updater until its queue is empty (or ``stop()``), adding up what it did."""
    spans = buckets = 0
    while not stop():
        r = run_once()
        spans, buckets = spans + r.spans, buckets + r.buckets
        if r.spans == 0:
            break
    return UpdateResult(spans, buckets)
