"""Operations - the people who keep lccm running: is data flowing, is it late, is anything stuck or failing.

Reads Prometheus (datasource uid ``lccm-prom``), which scrapes the API's and the ingest's ``/metrics``
(deploy/prometheus/prometheus.yml). Every metric name below is one the code registers: tests/test_dashboards.py
builds the collectors (lccm/metrics.py, api/observability.py) and checks each expression against them.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from lccm.dashboards._common import dashboard, prom_datasource, thresholds, to_model

UID = "lccm-operations"
RATE = "$__rate_interval"  # Grafana's: at least four scrape intervals, so rate() always has two samples


def query(expr: str, legend: str, ref_id: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id).datasource(prom_datasource())


def quantiles(metric: str, by: str = "") -> list[prometheus.Dataquery]:
    """p50 and p99 of a histogram over all instances (and ``by`` labels)."""
    group = f"le, {by}" if by else "le"
    prefix = f"{{{{{by}}}}} " if by else ""
    return [
        query(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))", f"{prefix}p{p}", ref)
        for q, p, ref in ((0.5, 50, "A"), (0.99, 99, "B"))
    ]


def series(title: str, targets: list[prometheus.Dataquery], unit: str, pos: dm.GridPos) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .datasource(prom_datasource())
        .targets(targets)  # type: ignore[arg-type]  # the SDK types targets as the generic Dataquery variant
        .unit(unit)
        .min(0)
        .legend(
            cb.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["mean", "max", "lastNotNull"])
        )
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
        .grid_pos(pos)
    )


def build() -> dict[str, Any]:
    board = (
        dashboard(UID, "Operations - ingest, queues, workers", ["operations"], "now-6h", refresh="30s")
        .with_panel(
            series(
                "Messages and readings per second",
                [
                    query(f"sum(rate(lccm_ingest_messages_received_total[{RATE}]))", "messages received", "A"),
                    query(f"sum(rate(lccm_ingest_messages_total[{RATE}]))", "messages committed", "B"),
                    query(f"sum(rate(lccm_ingest_readings_total[{RATE}]))", "readings in", "C"),
                    query(f"sum(rate(lccm_ingest_readings_stored_total[{RATE}]))", "readings stored", "D"),
                    query(f"sum(rate(lccm_ingest_duplicates_total[{RATE}]))", "duplicates dropped", "E"),
                ],
                "ops",
                dm.GridPos(h=8, w=12, x=0, y=0),
            )
        )
        .with_panel(
            series(
                "Dead letters per second by reason (GET /dead-letters has each message)",
                [query(f"sum by (reason) (rate(lccm_ingest_dead_letters_total[{RATE}]))", "{{reason}}")],
                "ops",
                dm.GridPos(h=8, w=12, x=12, y=0),
            )
        )
        .with_panel(
            series(
                "Commit latency (batch write and commit)",
                quantiles("lccm_ingest_commit_seconds"),
                "s",
                dm.GridPos(h=8, w=8, x=0, y=8),
            )
        )
        .with_panel(
            series(
                "Receive-to-commit lag per message",
                quantiles("lccm_ingest_commit_lag_seconds"),
                "s",
                dm.GridPos(h=8, w=8, x=8, y=8),
            )
        )
        .with_panel(
            series(
                "Batches: readings per batch, batches per second, messages waiting in memory",
                [
                    query(
                        f"sum(rate(lccm_ingest_batch_readings_sum[{RATE}]))"
                        f" / sum(rate(lccm_ingest_batch_readings_count[{RATE}]))",
                        "readings per batch",
                        "A",
                    ),
                    query(f"sum(rate(lccm_ingest_batches_total[{RATE}]))", "batches per second", "B"),
                    query("sum(lccm_ingest_inflight_messages)", "messages in flight", "C"),
                    query(f"sum(rate(lccm_ingest_write_retries_total[{RATE}]))", "write retries per second", "D"),
                ],
                "short",
                dm.GridPos(h=8, w=8, x=16, y=8),
            )
        )
        .with_panel(
            series(
                "Work queue depth (derived data and notification outboxes)",
                [query("max by (queue) (lccm_queue_depth)", "{{queue}}")],
                "short",
                dm.GridPos(h=8, w=12, x=0, y=16),
            )
        )
        .with_panel(
            series(
                "Updater lag: age of the oldest queued item",
                [query("max by (queue) (lccm_queue_oldest_age_seconds)", "{{queue}}")],
                "s",
                dm.GridPos(h=8, w=12, x=12, y=16),
            ).thresholds(thresholds((None, "green"), (60, "orange"), (900, "red")))
        )
        .with_panel(
            stat.Panel()
            .title("Workers up (1 = healthy), and the scrape targets")
            .datasource(prom_datasource())
            .targets(
                [
                    query("min by (stage) (lccm_worker_up)", "{{stage}}", "A"),
                    query('up{job=~"lccm-.*"}', "scrape {{job}}", "B"),
                    query("min(lccm_queue_probe_ok)", "queue probe", "C"),
                ]
            )
            .thresholds(thresholds((None, "red"), (1, "green")))
            .color_mode(cm.BigValueColorMode.BACKGROUND)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
            .grid_pos(dm.GridPos(h=8, w=8, x=0, y=24))
        )
        .with_panel(
            series(
                "Worker restarts",
                [query("sum by (stage) (increase(lccm_worker_restarts_total[1h]))", "{{stage}} (per hour)")],
                "short",
                dm.GridPos(h=8, w=8, x=8, y=24),
            )
        )
        .with_panel(
            series(
                "Notification failures by channel (notify_deliveries keeps each for a re-send)",
                [query(f"sum by (channel) (increase(lccm_notify_failures_total[{RATE}]))", "{{channel}}")],
                "short",
                dm.GridPos(h=8, w=8, x=16, y=24),
            ).thresholds(thresholds((None, "green"), (1, "red")))
        )
        .with_panel(
            series(
                "API requests per second by status",
                [query(f"sum by (status) (rate(lccm_api_requests_total[{RATE}]))", "{{status}}")],
                "reqps",
                dm.GridPos(h=8, w=12, x=0, y=32),
            )
        )
        .with_panel(
            series(
                "API latency by route",
                quantiles("lccm_api_request_duration_seconds", by="route"),
                "s",
                dm.GridPos(h=8, w=12, x=12, y=32),
            )
        )
    )
    return to_model(board)
