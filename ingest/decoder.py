"""Glue between the codec and the stream: refusals become dead letters, statuses become status rows.

An unknown device may simply have been registered after start-up: the registry is reloaded (at most once per
``refresh_interval_s``) and the message decoded again before it is refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from lccm.ingest.codec import Decoded, Limits, decode_message
from lccm.ingest.registry import Registry
from lccm.stream.batch import BatchBuilder, DeadLetterRow, StatusRow
from lccm.stream.loop import RawMessage

log = logging.getLogger(__name__)


class RegistryHolder:
    """The current registry, reloaded through the loader the composition root provides."""

    def __init__(
        self,
        loader: Callable[[], Registry],
        refresh_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loader = loader
        self._interval = refresh_interval_s
        self._clock = clock
        self.registry = loader()
        self._loaded_at = clock()

    def refresh_if_stale(self) -> bool:
        now = self._clock()
        if now - self._loaded_at < self._interval:
            return False
        self._loaded_at = now
        try:
            self.registry = self._loader()
        except Exception as e:
            log.warning("device registry reload failed: %s", e)
            return False
        return True


def make_decoder(holder: RegistryHolder, limits: Limits) -> Callable[[BatchBuilder, RawMessage], None]:
    def decode(batch: BatchBuilder, msg: RawMessage) -> None:
        out = decode_message(batch, holder.registry, msg.topic, msg.payload, msg.received_at_us, limits)
        if out.refusal is not None and out.refusal.reason == "unknown_device" and holder.refresh_if_stale():
            out = decode_message(batch, holder.registry, msg.topic, msg.payload, msg.received_at_us, limits)
        _record(batch, holder.registry, msg, out)

    return decode


def _record(batch: BatchBuilder, registry: Registry, msg: RawMessage, out: Decoded) -> None:
    if out.refusal is not None:
        batch.dead_letters.append(
            DeadLetterRow(
                received_at_us=msg.received_at_us,
                topic=msg.topic,
                payload=msg.payload,
                reason=out.refusal.reason,
                detail=out.refusal.detail,
                device_ref=out.device_ref,
            )
        )
    elif out.status is not None and out.device_ref is not None:
        batch.statuses.append(StatusRow(registry.devices[out.device_ref], out.status, msg.received_at_us))
