"""Shared fixtures: a fresh database on the real PostgreSQL, a private Mosquitto, a unique topic root per test."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from lccm import logs
from lccm.services import Broker, start_broker
from tests._browser import browser, page, phone, served_city  # noqa: F401  (the browser tests' fixtures)
from tests._db import fresh_database

# The suite (`make test`, CI) draws the same examples on every run, so a red build is a regression of the code under
# test, reproducible as it is, never a new search's luck; `HYPOTHESIS_PROFILE=explore` searches afresh (with the
# example database) to find new counter-examples, which then become fixed cases.
settings.register_profile("suite", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with end-to-end runs (marked slow: tens of seconds each) first, the others after, each in its order:
    pytest-xdist hands whole files to workers in this order, and long ones started last leave the other workers idle
    at the end. The order is the same in every worker, as pytest-xdist requires."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture
def fresh_db() -> Iterator[str]:
    """A new, migrated database for one test; dropped afterwards."""
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A private Mosquitto on a free loopback port, configured never to drop queued messages."""
    b = start_broker(Path(tmp_path_factory.mktemp("mosquitto")), persist=False)
    yield b
    b.stop()


@pytest.fixture
def topic_root() -> str:
    return f"t{uuid.uuid4().hex[:10]}/v1"


@pytest.fixture(autouse=True)
def _no_lccm_log_handler_left_behind() -> Iterator[None]:
    """A test that runs a command in-process (typer's CliRunner) leaves the root handler ``lccm.logs.configure``
    installed writing to that command's captured stderr, closed once the command returns; a server thread of a later
    test in the same process then logs into it and prints '--- Logging error ---'. Which test comes later depends on
    the order and on how pytest-xdist shares the files out, so each test removes such a handler when it ends."""
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, logs._OURS, False)]:
        root.removeHandler(handler)
