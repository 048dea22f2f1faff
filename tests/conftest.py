"""Shared fixtures: a fresh database on the real PostgreSQL, a private Mosquitto, a unique topic root per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lccm.services import Broker, start_broker
from tests._db import fresh_database


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
