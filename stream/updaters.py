"""The derived-data updaters run together: energy and emissions from registers, then samples and lamp time, then
the air-quality indices of the station hours the samples changed, then each device's reading times per day
(``reading_days``, what completeness reports).

``lccm ingest`` runs them in one supervised worker (stage ``updaters``, poked after every committed batch, on the
process's connection pool); ``lccm recompute`` queues a
range for both and drains them, the same code as the live path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from lccm.store.connect import Connect
from lccm.store.energy import enqueue, series_in_range
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
        results = [self.energy.drain(stop), self.samples.drain(stop)]
        if self.aqi is not None:
            results.append(self.aqi.drain(stop))
        if self.days is not None:
            results.append(self.days.drain(stop))
        return UpdateResult(sum(r.spans for r in results), sum(r.buckets for r in results))


def recompute(
    updaters: Updaters,
    connect: Connect,
    start_us: int,
    end_us: int,
    step_us: int = WEEK_US,
) -> UpdateResult:
    """Rebuild every derived bucket of [start, end) from raw readings through the live path's queues and updaters,
    a step at a time so memory stays bounded; then mark the late spans inside the range resolved. Idempotent. Sample
    buckets are re-read whole, not continued from their stored rows as on the live path."""
    updaters = dataclasses.replace(updaters, samples=dataclasses.replace(updaters.samples, continue_stored=False))
    spans = buckets = 0
    for lo in range(start_us, end_us, step_us):
        hi = min(lo + step_us, end_us) - 1
        with connect() as conn, conn.transaction():
            enqueue(conn, series_in_range(conn, ("register",), lo, hi), "rollup_queue")
            enqueue(conn, series_in_range(conn, ("instant", "state"), lo, hi), "sample_queue")
        result = updaters.drain()
        spans, buckets = spans + result.spans, buckets + result.buckets
    with connect() as conn:
        resolve_late_spans(conn, start_us, end_us)
    return UpdateResult(spans, buckets)
