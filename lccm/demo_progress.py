"""What ``lccm demo`` shows while it runs, and its final summary.

On a terminal: a live panel (rich), redrawn about once a second. Without one (CI, a pipe) or with ``--json``: one
short plain line every few seconds. The summary is a table, or one JSON object with ``--json`` (printed by the CLI).

Lag is shown as the *replay lag*: how far the simulated clock (the send time of the newest message the simulator has
handed to the broker) is behind the wall clock. The demo replays the recent past at speed and then follows the wall
clock, so this falls from hours to seconds. Beside it, the *ingest backlog*: messages the broker has acknowledged to
the simulator that ingest has not committed yet.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from lccm.stream.loop import StreamStats

PLAIN_EVERY_S = 10.0  # one plain progress line this often
CATCHING_UP_S = 120.0  # a replay further behind the wall clock than this is still catching up


@dataclass
class DemoStatus:
    """The running demo as the display reads it: fixed facts, plus live counters owned by other threads."""

    city: str
    api_url: str
    broker: str  # "127.0.0.1:40123 (mosquitto)"
    database: str  # "embedded (pgserver)", "external"
    speed: float
    stats: StreamStats  # the ingest loop's counters (written by its thread; only read here)
    stop: threading.Event
    metrics_url: str | None = None  # the ingest's /metrics and /health (None: LCCM_METRICS_PORT=0)
    started: float = field(default_factory=time.monotonic)
    sim: dict[str, Any] = field(default_factory=dict)  # the simulator's latest progress report

    def on_sim(self, info: dict[str, Any]) -> None:
        self.sim = info


@dataclass(frozen=True)
class Figures:
    """One consistent reading of the counters, with rates since the previous reading."""

    elapsed_s: float
    messages: int
    readings: int
    duplicates: int
    devices: int
    dead_letters: dict[str, int]
    published: int
    acked: int
    backlog: int
    replay_lag_s: float | None
    messages_per_s: float
    readings_per_s: float

    @property
    def dead_total(self) -> int:
        return sum(self.dead_letters.values())


class Rates:
    """Messages and readings per second over the interval between two readings (about a second on the panel)."""

    def __init__(self) -> None:
        self._last: tuple[float, int, int] | None = None

    def figures(self, status: DemoStatus, now: float | None = None, wall: float | None = None) -> Figures:
        now = time.monotonic() if now is None else now
        wall = time.time() if wall is None else wall
        s, sim = status.stats, status.sim
        # Counters written by the ingest thread: copy before use (a dict copy is atomic, iterating it is not).
        dead = dict(s.dead_letters)
        messages, readings = s.messages, s.readings_stored
        t0, m0, r0 = self._last or (status.started, 0, 0)
        dt = max(now - t0, 1e-9)
        self._last = (now, messages, readings)
        acked = int(sim.get("acked", 0))
        sim_now = sim.get("sim_now_s") or None
        return Figures(
            elapsed_s=now - status.started,
            messages=messages,
            readings=readings,
            duplicates=s.duplicates_dropped + s.duplicates_in_db,
            devices=len(s.devices_seen),
            dead_letters=dead,
            published=int(sim.get("published", 0)),
            acked=acked,
            backlog=max(acked - messages, 0),
            replay_lag_s=max(wall - float(sim_now), 0.0) if sim_now else None,
            messages_per_s=(messages - m0) / dt,
            readings_per_s=(readings - r0) / dt,
        )


def duration(seconds: float) -> str:
    """1 h 05 min, 4 min 10 s, 12 s."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def _lag(f: Figures, speed: float) -> str:
    if f.replay_lag_s is None:
        return "replay not started"
    state = f"catching up at {speed:g}x" if f.replay_lag_s > CATCHING_UP_S else "live"
    return f"replay {duration(f.replay_lag_s)} behind wall clock ({state})"


def _top(counts: Mapping[str, int], n: int = 3) -> str:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{k} {v:,}" for k, v in ranked[:n])
    return shown + (f", +{len(ranked) - n} more" if len(ranked) > n else "")


def render_panel(status: DemoStatus, f: Figures) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column()
    grid.add_row("API", f"{status.api_url}")
    grid.add_row("web", f"{status.api_url}/docs  (OpenAPI, try it in a browser)")
    grid.add_row("services", f"broker {status.broker} · database {status.database}")
    if status.metrics_url:
        grid.add_row("metrics", f"{status.metrics_url}/metrics · {status.metrics_url}/health/ready")
    grid.add_row("running", duration(f.elapsed_s))
    grid.add_row(
        "messages",
        f"{f.published:,} published · {f.acked:,} acked by the broker · {f.messages:,} committed"
        f" ({f.messages_per_s:,.0f}/s)",
    )
    grid.add_row(
        "readings",
        f"{f.readings:,} stored ({f.readings_per_s:,.0f}/s) · {f.duplicates:,} duplicates removed"
        f" · {f.devices:,} devices seen",
    )
    dead = f"{f.dead_total:,}" + (f"  ({_top(f.dead_letters)})" if f.dead_letters else "")
    grid.add_row("dead letters", dead)
    grid.add_row("lag", f"{_lag(f, status.speed)} · ingest backlog {f.backlog:,} messages")
    footer = (
        Text("stopping ... Ctrl-C again forces the stop", style="bold yellow")
        if status.stop.is_set()
        else Text("Ctrl-C stops the demo (servers included) and prints a summary", style="dim")
    )
    return Panel(Group(grid, Text(""), footer), title=f"lccm demo · {status.city}", title_align="left")


def plain_line(status: DemoStatus, f: Figures) -> str:
    return (
        f"[{f.elapsed_s:5.0f} s] messages {f.messages:,} · readings {f.readings:,} new, {f.duplicates:,} duplicates"
        f" · dead letters {f.dead_total:,} · backlog {f.backlog:,} · {_lag(f, status.speed)}"
    )


class LivePanel:
    """The panel on a terminal, redrawn by rich's refresh thread about once a second."""

    def __init__(self, status: DemoStatus, console: Console) -> None:
        self.status, self.console, self._rates = status, console, Rates()
        self._last: RenderableType = Text("")

    def _render(self) -> RenderableType:
        with contextlib.suppress(Exception):  # a counter caught mid-update: show the previous frame once more
            self._last = render_panel(self.status, self._rates.figures(self.status))
        return self._last

    @contextlib.contextmanager
    def showing(self) -> Iterator[None]:
        with Live(console=self.console, get_renderable=self._render, refresh_per_second=1):
            yield


class PlainLines:
    """A plain line every PLAIN_EVERY_S, driven by the simulator's progress reports (about one a second)."""

    def __init__(self, status: DemoStatus, echo: Callable[[str], None], every_s: float = PLAIN_EVERY_S) -> None:
        self.status, self.echo, self.every_s, self._rates = status, echo, every_s, Rates()
        self._next = status.started + every_s

    def on_sim(self, info: dict[str, Any]) -> None:
        self.status.on_sim(info)
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every_s
            self.echo(plain_line(self.status, self._rates.figures(self.status, now)))


def summary_table(summary: Mapping[str, Any]) -> Table:
    """The final summary (the same figures as ``--json``) as one readable table."""
    table = Table(title="lccm demo: summary", show_header=False, title_justify="left", min_width=60)
    # Folded, never cut with an ellipsis: a password or a figure shown in part is no use.
    table.add_column(style="cyan", no_wrap=True)
    table.add_column(justify="right", overflow="fold")
    table.add_column(style="dim", overflow="fold")

    def section(name: str) -> None:
        table.add_section()
        table.add_row(Text(name, style="bold"), "", "")

    sim = summary.get("simulator", {})
    section("run")
    ended_by = {"signal": "Ctrl-C", "duration": "--duration"}.get(summary.get("ended_by", ""), "an error")
    table.add_row("elapsed", duration(summary["elapsed_s"]), f"ended by {ended_by}")
    table.add_row("database / broker", f"{summary['database']} / {summary['broker']}", "")
    section("ingest")
    table.add_row("messages committed", f"{summary['messages']:,}", "this run")
    table.add_row("readings stored", f"{summary['readings_stored_this_run']:,}", "this run")
    table.add_row("readings per second", f"{summary['readings_per_s']:,.1f}", "")
    table.add_row("readings in the database", f"{summary['readings_stored']:,}", "all runs")
    table.add_row("duplicates removed", f"{summary['duplicates_removed']:,}", "")
    table.add_row("devices seen / registered", f"{summary['devices_seen']:,} / {summary['devices_registered']:,}", "")
    dead = summary.get("dead_letters", {})
    table.add_row("dead letters", f"{sum(dead.values()):,}", "all runs")
    for reason, n in sorted(dead.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(f"  {reason}", f"{n:,}", "")
    section("energy and emissions (all runs)")
    table.add_row("electricity", f"{summary['energy_kwh']:,.1f} kWh", "")
    table.add_row("fuel", f"{summary['fuel_l']:,.1f} L", "")
    table.add_row("emissions", f"{summary['kgco2e']:,.1f} kgCO2e", "")
    if sim:
        section("simulator (ground truth)")
        if "error" in sim:
            table.add_row("error", "", str(sim["error"]))
        for key, label in (("published", "published"), ("acked", "acknowledged by the broker"),
                           ("not_acked", "not acknowledged"), ("dropped_on_purpose", "dropped on purpose (fault)"),
                           ("readings_acked", "readings acknowledged")):  # fmt: skip
            if key in sim:
                table.add_row(label, f"{sim[key]:,}", "")
        if sim.get("faults"):
            table.add_row("faults injected", f"{sum(sim['faults'].values()):,}", _top(sim["faults"], 2))
    inventory = summary.get("inventory")
    if inventory:
        section("base year")
        table.add_row(f"CFO {inventory['base_year']}", inventory["import"], f"{inventory['items']} items")
        table.add_row(f"devices mapped ({inventory['mapped_year']})", f"{inventory['devices_mapped']:,}", "")
    alerts = summary.get("alerts")
    if alerts:
        section("alerts")
        opened = sum(sum(states.values()) for states in alerts["by_rule"].values())
        table.add_row("alerts", f"{opened:,}", _top({r: sum(s.values()) for r, s in alerts["by_rule"].items()}))
        table.add_row("changes paged / handed on", f"{alerts['changes_paged']:,} / {alerts['changes_handed_on']:,}", "")
        table.add_row("deliveries ok / failed", f"{alerts['deliveries_ok']:,} / {alerts['deliveries_failed']:,}", "")
    logins = summary.get("logins")
    if logins:
        section("logins (POST /auth/login; new passwords each run)")
        for login in logins:
            table.add_row(login["username"], login["password"], login["role"])
    return table
