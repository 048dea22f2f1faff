"""Supervised workers (lccm/workers.py): a failing step is caught, logged with its stage, counted and retried with
backoff until it recovers; the health rule; fatal errors; bounded stop with a drain; the supervisor's order; the
heartbeat that ``lccm healthcheck --ingest`` reads. Time that the health rule judges comes from an injected clock;
the waits are only polls for a thread to get somewhere."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lccm.cli import HEARTBEAT_FILE, app
from lccm.services import Broker
from lccm.workers import STAGE, Backoff, StageFilter, Supervisor, Worker, heartbeat_problems, write_heartbeat

FAST = Backoff(0.01, 0.05)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


class Flaky:
    """A step that fails while ``failing`` is set, counting its calls."""

    def __init__(self, failing: bool = True) -> None:
        self.failing = threading.Event()
        if failing:
            self.failing.set()
        self.calls = 0
        self.ok = 0

    def __call__(self, _stopping: Callable[[], bool]) -> None:
        self.calls += 1
        if self.failing.is_set():
            raise ConnectionError(f"database went away (call {self.calls})")
        self.ok += 1


def test_a_failing_step_is_retried_with_backoff_counted_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(StageFilter())
    clock = FakeClock()
    step = Flaky()
    w = Worker("updaters", step, idle_s=0.01, backoff=FAST, unhealthy_after_s=30.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="lccm.workers"):
        w.start()
        assert wait_for(lambda: step.calls >= 4)
        s = w.status()
        assert (s.name, s.state, s.healthy) == ("updaters", "backing-off", True)  # failing, but not for long yet
        assert s.restarts >= 3 and s.last_ok_age_s is None
        assert s.last_error is not None and s.last_error.startswith("ConnectionError: database went away")
        step.failing.clear()
        assert wait_for(lambda: step.ok >= 2)
        assert w.stop(timeout_s=10)
    failures = [r for r in caplog.records if "step failed" in r.getMessage()]
    assert failures and {r.stage for r in failures} == {"updaters"}  # type: ignore[attr-defined]
    assert len(failures) == w.errors == step.calls - step.ok, "every exception is logged and counted"
    s = w.status()
    assert s.state == "stopped" and s.restarts == w.errors and s.last_ok_age_s is not None


def test_a_worker_failing_longer_than_the_limit_is_unhealthy_until_a_step_succeeds() -> None:
    clock = FakeClock()
    step = Flaky()
    w = Worker("alerts", step, idle_s=0.01, backoff=FAST, unhealthy_after_s=60.0, clock=clock)
    w.start()
    try:
        assert wait_for(lambda: step.calls >= 2)
        assert w.status().healthy
        clock.now += 61.0  # the first failure of this run of failures is now 61 s old
        s = w.status()
        assert (s.state, s.healthy) == ("backing-off", False) and "database went away" in str(s.last_error)
        step.failing.clear()
        assert wait_for(lambda: step.ok >= 1)
        assert wait_for(lambda: w.status().healthy) and w.status().state == "running"
        step.failing.set()  # fails again: a new run of failures, judged from its own start
        assert wait_for(lambda: w.status().state == "backing-off") and w.status().healthy
    finally:
        assert w.stop(timeout_s=10)


class Fatal(Exception):
    pass


def test_a_fatal_error_class_fails_the_worker_loudly_and_it_stays_failed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(StageFilter())

    def step(_stopping: Callable[[], bool]) -> None:
        raise Fatal("schema is gone")

    w = Worker("stream", step, backoff=FAST, fatal=(Fatal,))
    with caplog.at_level(logging.WARNING, logger="lccm.workers"):
        w.start()
        assert wait_for(lambda: w.status().state == "failed")
    s = w.status()
    assert (s.healthy, s.last_error, w.errors, s.restarts) == (False, "Fatal: schema is gone", 1, 0)
    [record] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert record.stage == "stream" and "will not be retried" in record.getMessage()  # type: ignore[attr-defined]
    assert w.stop(timeout_s=5)


def test_log_records_carry_the_stage_of_the_worker_that_emitted_them(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(StageFilter())
    log = logging.getLogger("lccm.test_stage")
    seen: list[str] = []

    def step(_stopping: Callable[[], bool]) -> None:
        seen.append(STAGE.get())
        log.warning("inside")

    w = Worker("notify-dispatch", step, idle_s=10.0)
    with caplog.at_level(logging.WARNING, logger="lccm.test_stage"):
        w.start()
        assert wait_for(lambda: bool(seen))
        log.warning("outside")
        assert w.stop(timeout_s=5)
    stages = {r.getMessage(): r.stage for r in caplog.records if r.name == "lccm.test_stage"}  # type: ignore[attr-defined]
    assert stages == {"inside": "notify-dispatch", "outside": ""}  # outside: the log set-up names the command
    assert seen == ["notify-dispatch"]


def test_stop_is_bounded_the_drain_runs_until_its_deadline_and_a_failing_drain_is_logged() -> None:
    drained: list[str] = []

    def endless_drain(stopping: Callable[[], bool]) -> None:
        while not stopping():  # work that never runs out: the deadline ends it
            time.sleep(0.01)
        drained.append("deadline")

    w = Worker("updaters", lambda _s: None, idle_s=0.01, drain=endless_drain, drain_s=0.2)
    w.start()
    assert w.stop(timeout_s=10) and drained == ["deadline"] and w.status().state == "stopped"

    def broken_drain(_stopping: Callable[[], bool]) -> None:
        raise ConnectionError("no database at stop")

    w2 = Worker("alerts", lambda _s: None, idle_s=0.01, drain=broken_drain)
    w2.start()
    assert w2.stop(timeout_s=10)
    s = w2.status()
    assert (s.state, w2.errors, s.last_error) == ("stopped", 1, "ConnectionError: no database at stop")


def test_a_worker_stopped_while_backing_off_stops_at_once() -> None:
    step = Flaky()
    w = Worker("stream", step, backoff=Backoff(60.0, 60.0))  # a minute's backoff after the first failure
    w.start()
    assert wait_for(lambda: w.status().state == "backing-off")
    t0 = time.monotonic()
    assert w.stop(timeout_s=30)
    assert time.monotonic() - t0 < 30  # a bound, not a speed claim: the stop interrupts the backoff's sleep
    assert w.status().state == "stopped"


def test_the_supervisor_starts_downstream_first_stops_upstream_first_and_reports(tmp_path: Path) -> None:
    order: list[str] = []

    def make(name: str, failing: bool = False) -> Worker:
        def step(_stopping: Callable[[], bool]) -> None:
            if not any(o == f"start {name}" for o in order):
                order.append(f"start {name}")
            if failing:
                raise TimeoutError("broker away")

        def drain(_stopping: Callable[[], bool]) -> None:
            order.append(f"drain {name}")

        return Worker(name, step, idle_s=0.01, drain=drain, backoff=FAST, unhealthy_after_s=0.0)

    sup = Supervisor([make("stream"), make("updaters"), make("alert-publisher", failing=True)])
    with pytest.raises(ValueError, match="already supervised"):
        sup.add(make("stream"))
    sup.start()
    assert wait_for(lambda: len(order) == 3)
    assert wait_for(lambda: sup["alert-publisher"].status().restarts >= 1)
    assert not sup.healthy()  # failing with a limit of 0 s: unhealthy at once
    assert [(s.name, s.healthy) for s in sup.statuses()] == [
        ("stream", True), ("updaters", True), ("alert-publisher", False)
    ]  # fmt: skip

    beat = tmp_path / "ingest.heartbeat"
    doc = write_heartbeat(beat, sup, stream={"messages": 3})
    assert json.loads(beat.read_text()) == doc and doc["healthy"] is False and doc["stream"] == {"messages": 3}
    [problem] = heartbeat_problems(beat, max_age_s=60)
    assert problem.startswith("ingest: worker alert-publisher is unhealthy (backing-off,")
    assert "last error: TimeoutError: broker away" in problem

    sup.stop(timeout_s=10)
    assert order[:3] == ["start alert-publisher", "start updaters", "start stream"]
    assert order[3:] == ["drain stream", "drain updaters", "drain alert-publisher"]
    assert {s.state for s in sup.statuses()} == {"stopped"}

    healthy = Supervisor([make("stream")])
    healthy.start()
    assert wait_for(healthy.healthy)
    write_heartbeat(beat, healthy)
    assert heartbeat_problems(beat, max_age_s=60) == []
    os.utime(beat, (time.time() - 120, time.time() - 120))
    assert heartbeat_problems(beat, max_age_s=60) == [f"ingest: no heartbeat in {beat} for 120 s"]
    healthy.stop(timeout_s=10)
    assert heartbeat_problems(tmp_path / "missing", max_age_s=60) == [f"ingest: no heartbeat at {tmp_path}/missing"]


def test_healthcheck_ingest_fails_naming_the_unhealthy_stage_and_why(
    fresh_db: str, broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LCCM_DATABASE_URL", fresh_db)
    monkeypatch.setenv("LCCM_MQTT_HOST", broker.host)
    monkeypatch.setenv("LCCM_MQTT_PORT", str(broker.port))
    monkeypatch.setenv("LCCM_DATA_DIR", str(tmp_path))
    step = Flaky()
    sup = Supervisor([Worker("stream", lambda _s: None, idle_s=0.05), Worker("notify-dispatch", step, backoff=FAST,
                                                                            unhealthy_after_s=0.0)])  # fmt: skip
    sup.start()
    try:
        assert wait_for(lambda: sup["notify-dispatch"].status().restarts >= 1)
        write_heartbeat(tmp_path / HEARTBEAT_FILE, sup)  # as `lccm ingest` does every 10 s
        sick = CliRunner().invoke(app, ["healthcheck", "--ingest"])
        assert sick.exit_code == 1
        assert "ingest: worker notify-dispatch is unhealthy (backing-off," in sick.output
        assert "last error: ConnectionError: database went away" in sick.output and "worker stream" not in sick.output
        step.failing.clear()
        assert wait_for(lambda: sup.healthy())
        write_heartbeat(tmp_path / HEARTBEAT_FILE, sup)
        well = CliRunner().invoke(app, ["healthcheck", "--ingest"])
        assert (well.exit_code, well.output.strip()) == (0, "ok")
    finally:
        sup.stop(timeout_s=10)
