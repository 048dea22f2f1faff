"""Topics as validated values: ``<root>/<city>/<device_id>/<channel>`` (docs/contract.md#topics).

The ingest subscribes to the whole root (``<root>/#``), so every message published under it is either a device's
(decoded, or dead-lettered with ``bad_topic`` when its topic breaks the contract) or one of the product's own
outbound messages, which are not device data and are left alone:

- ``<root>/<city>/alerts/...``: alert changes (ingest/alerts.py). ``alerts`` is a reserved topic level:
  no device may have it as its id (the registry import refuses it, imports/registry.py).
- ``<root>/<city>/<device_id>/cmd/...``: commands to a device (each device's broker role lets it read its own:
  lccm/mqtt_identity.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_CITY = re.compile(r"^[a-z0-9-]{1,32}$")
_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

Channel = Literal["up", "status"]
ALERTS_LEVEL = "alerts"
COMMANDS_LEVEL = "cmd"
# Device ids that would make a device's topics the product's own outbound topics.
RESERVED_DEVICE_IDS = frozenset({ALERTS_LEVEL})


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


def is_outbound(topic: str, root: str = "lccm/v1") -> bool:
    """True for the product's own outbound topics under ``root`` (alerts, device commands): not device data."""
    prefix = root + "/"
    if not topic.startswith(prefix):
        return False
    parts = topic[len(prefix) :].split("/")
    return (len(parts) >= 2 and parts[1] == ALERTS_LEVEL) or (len(parts) >= 3 and parts[2] == COMMANDS_LEVEL)


def subscription_filters(root: str = "lccm/v1") -> list[str]:
    """The whole root: a message on any other topic under it is dead-lettered (``bad_topic``), never lost."""
    return [f"{root}/#"]
