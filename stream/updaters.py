"""The derived-data updaters run together: energy and emissions from registers, then samples and lamp time, then
the air-quality indices of the station hours the samples changed, then each device's reading times per day
(``reading_days``, what completeness reports).

``lccm ingest`` runs them in one supervised worker (stage ``updaters``, poked after every committed batch, on the
process's connection pool); ``lccm recompute`` queues a
range for both and drains them, the same code as the live path.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from lccm.store.connect import Connect
from lccm.store.energy import enqueue, forget_bound_days, series_in_range
from lccm.store.samples import resolve_late_spans
from lccm.stream.aqi import AqiUpdater
from lccm.stream.days import DayUpdater
from lccm.stream.energy import EnergyUpdater, UpdateResult
from lccm.stream.samples import SampleUpdater

WEEK_US = 7 * 86_400 * 1_000_000


@dataclass(frozen=True, slots=True)
class Updaters:
    energy: EnergyUpdater
    samples: SampleUpdater
    aqi: AqiUpdater | None = None
    days: DayUpdater | None = None

    def drain(self, stop: Callable[[], bool] = lambda: False) -> UpdateResult:
        """Claim in rounds, one claim of each updater in pipeline order, until a round finds every queue empty.
        Not each queue to empty in turn: under a steady stream the first updater then claimed about one batch at a
        time (57 of its claims for 101 batches, against 3 of the sample updater's, which waited) and re-read and
        rewrote the same buckets for each; in rounds, each claim takes what was queued during the others' work
        (benchmarks/README.md#the-databases-cpu-for-derived-data). What is derived does not depend on how the
        queued spans are grouped into claims (docs/partitions.md)."""
        parts = [u.run_once for u in (self.energy, self.samples, self.aqi, self.days) if u is not None]
        spans = buckets = 0
        busy = True
        while busy and not stop():
            busy = False
            for run_once in parts:
                if stop():  # a claim can take seconds at a city's scale: a stop waits for one, not for a round
                    break
                r = run_once()
                spans, buckets, busy = spans + r.spans, buckets + r.buckets, busy or r.spans > 0
        return UpdateResult(spans, buckets)


def recompute(
    updaters: Updaters,
    connect: Connect,
    start_us: int,
    end_us: int,
    step_us: int = WEEK_US,
) -> UpdateResult:
    """Rebuild every derived bucket of [start, end) from raw readings through the live path's queues and updaters,
    a step at a time so memory stays bounded; then mark the late spans inside the range resolved. Idempotent. Sample
    buckets are re-read whole, not continued from their stored rows as on the live path, and energy ranges are read
    whole, not continued from a stored counter state.

    The cached learned bounds of the days after the start's day (store/energy.py: bound_priors) are learned from
    buckets this rewrites: they are deleted before each step, so a step's claims learn them again from the steps
    before it, and once more at the end, so none learned meanwhile by a live claim from buckets not yet rewritten is
    kept."""
    energy = copy.copy(updaters.energy)
    energy.continue_stored = False
    updaters = dataclasses.replace(
        updaters, energy=energy, samples=dataclasses.replace(updaters.samples, continue_stored=False)
    )
    spans = buckets = 0
    for lo in range(start_us, end_us, step_us):
        hi = min(lo + step_us, end_us) - 1
        with connect() as conn, conn.transaction():
            forget_bound_days(conn, start_us)
            enqueue(conn, series_in_range(conn, ("register",), lo, hi), "rollup_queue")
            enqueue(conn, series_in_range(conn, ("instant", "state"), lo, hi), "sample_queue")
        result = updaters.drain()
        spans, buckets = spans + result.spans, buckets + result.buckets
    with connect() as conn:
        forget_bound_days(conn, start_us)
        resolve_late_spans(conn, start_us, end_us)
    return UpdateResult(spans, buckets)
