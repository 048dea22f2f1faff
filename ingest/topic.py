"""Topics as validated values: ``<root>/<city>/<device_id>/<channel>`` (docs/contract.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_CITY = re.compile(r"^[a-z0-9-]{1,32}$")
_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

Channel = Literal["up", "status"]


class TopicError(ValueError):
    """The topic does not follow the contract."""


@dataclass(frozen=True, slots=True)
class Topic:
    city: str
    device_id: str
    channel: Channel

    @classmethod
    def parse(cls, topic: str, root: str = "lccm/v1") -> Topic:
        prefix = root + "/"
        if not topic.startswith(prefix):
            raise TopicError(f"topic {topic!r} does not start with {prefix!r}")
        parts = topic[len(prefix) :].split("/")
        if len(parts) != 3:
            raise TopicError(f"topic {topic!r} is not {root}/<city>/<device_id>/<up|status>")
        city, device_id, channel = parts
        if not _CITY.match(city):
            raise TopicError(f"city {city!r} in topic {topic!r} is not [a-z0-9-]{{1,32}}")
        if not _DEVICE.match(device_id):
            raise TopicError(f"device id {device_id!r} in topic {topic!r} is not a valid device id")
        if channel == "up":
            return cls(city, device_id, "up")
        if channel == "status":
            return cls(city, device_id, "status")
        raise TopicError(f"channel {channel!r} in topic {topic!r} is neither 'up' nor 'status'")

    @staticmethod
    def device_ref(topic: str, root: str = "lccm/v1") -> str | None:
        """The device id a (possibly malformed) topic names, for the dead-letter record."""
        parts = topic.split("/")
        depth = len(root.split("/"))
        if len(parts) > depth + 1 and _DEVICE.match(parts[depth + 1]):
            return parts[depth + 1]
        return None

    def render(self, root: str = "lccm/v1") -> str:
        return f"{root}/{self.city}/{self.device_id}/{self.channel}"


def subscription_filters(root: str = "lccm/v1") -> list[str]:
    return [f"{root}/+/+/up", f"{root}/+/+/status"]
