"""The simulator's publisher never waits forever: not for PUBACKs from a broker that went silent, not after a stop.

The broker is a private mosquitto that the test freezes with SIGSTOP: the connection stays up, nothing is
acknowledged, exactly what a publisher sees from a broker that died or hangs behind a live TCP connection.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lccm.services import Broker, start_broker
from lccm.simulators.publisher import PublisherPool


@pytest.fixture
def frozen_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker that accepted our connection and then stopped answering."""
    broker = start_broker(tmp_path, persist=False)
    assert broker.process is not None
    yield broker
    os.kill(broker.process.pid, signal.SIGCONT)
    broker.stop()


def _pool(broker: Broker, outcomes: list[tuple[object, bool]], **kw: Any) -> PublisherPool:
    pool = PublisherPool(
        broker.host, broker.port, clients=1, window=5, on_done=lambda t, ok: outcomes.append((t, ok)), **kw
    )
    pool.connect()
    assert broker.process is not None
    os.kill(broker.process.pid, signal.SIGSTOP)
    return pool


def test_after_a_stop_the_window_and_the_flush_end_with_the_grace(frozen_broker: Broker) -> None:
    stop = threading.Event()
    outcomes: list[tuple[object, bool]] = []
    # A PUBACK timeout far beyond the test's own timeout: only the stop can end these waits.
    pool = _pool(frozen_broker, outcomes, stop_event=stop, ack_timeout_s=3600.0, stop_grace_s=0.2)
    try:
        for i in range(5):
            assert pool.publish("dev", "t/x", b"x", False, i)  # fills the window
        stop_later = threading.Timer(0.3, stop.set)
        stop_later.start()
        assert pool.publish("dev", "t/x", b"x", False, 5) is False  # blocked until the stop, then refused
        assert pool.flush(timeout_s=3600.0) == 5
        assert sorted(outcomes, key=lambda o: str(o[0])) == [(i, False) for i in range(5)]
    finally:
        pool.close()


def test_a_broker_silent_for_the_ack_timeout_ends_the_run(frozen_broker: Broker) -> None:
    outcomes: list[tuple[object, bool]] = []
    pool = _pool(frozen_broker, outcomes, ack_timeout_s=0.3)
    try:
        for i in range(5):
            pool.publish("dev", "t/x", b"x", False, i)
        with pytest.raises(TimeoutError, match="no PUBACK"):
            pool.publish("dev", "t/x", b"x", False, 5)
        assert pool.flush(timeout_s=0.2) == 5 and outcomes == [(i, False) for i in range(5)]
    finally:
        pool.close()
