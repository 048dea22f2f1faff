"""Shared fixtures: a fresh database on the real PostgreSQL, a private Mosquitto, a unique topic root per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from lccm.services import Broker, start_broker
from tests._browser import browser, page, phone, served_city  # noqa: F401  (the browser tests' fixtures)
from tests._db import fresh_database

# The suite (`make test`, CI) draws the same examples on every run, so a red build is a regression of the code under
# test, reproducible as it is, never a new search's luck; `HYPOTHESIS_PROFILE=explore` searches afresh (with the
# example database) to find new counter-examples, which then become fixed cases.
settings.register_profile("suite", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


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
