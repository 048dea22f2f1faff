"""Glue between the codec and the stream: refusals become dead letters, statuses become status rows.

An unknown device may simply have been registered after start-up (or a device moved to a site in another city):
the registry is reloaded (at most once per ``refresh_interval_s``) and the message decoded again before it is
refused. Each refusal is logged as one line (INFO: the dead-letter table holds the message); the product's own
outbound messages, which the subscription to the whole topic root also brings, are acknowledged and left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable

from lccm.ingest.codec import Decoded, Limits, decode_message
from lccm.ingest.registry import Registry
from lccm.stream.batch import BatchBuilder, DeadLetterRow, StatusRow
from lccm.stream.loop import RawMessage

log = logging.getLogger(__name__)


class RegistryHolder:
    """The current registry, reloaded through the loader the composition root provides.

    A message refused for a reason the registry decides (an unknown device, another city) makes the holder look
    again before the refusal stands: it reloads when the registry is older than ``refresh_interval_s``, or at once
    when ``probe`` (a cheap fingerprint of the registry tables) says it changed since the load. So a device imported
    a moment ago is accepted from its first message; the probe runs at most every ``probe_interval_s``, so a flood
    of messages from an unregistered device costs a few queries a second, not one each."""

    def __init__(
        self,
        loader: Callable[[], Registry],
        refresh_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        probe: Callable[[], Hashable] | None = None,
        probe_interval_s: float = 0.5,
    ) -> None:
        self._loader = loader
        self._probe = probe
        self._interval = refresh_interval_s
        self._probe_interval = probe_interval_s
        self._clock = clock
        self._probed_at = clock()
        self._fingerprint = probe() if probe is not None else None  # before the load: a change in between shows
        self.registry = loader()
        self._loaded_at = self._probed_at

    def refresh_if_stale(self) -> bool:
        """Reload if the registry may have changed; True if it was reloaded."""
        now = self._clock()
        if now - self._loaded_at < self._interval and not self._changed(now):
            return False
        self._loaded_at = now
        try:
            if self._probe is not None:
                self._fingerprint = self._probe()
            self.registry = self._loader()
        except Exception as e:
            log.warning("device registry reload failed: %s", e)
            return False
        return True

    def _changed(self, now: float) -> bool:
        if self._probe is None or now - self._probed_at < self._probe_interval:
            return False
        self._probed_at = now
        try:
            return self._probe() != self._fingerprint
        except Exception as e:
            log.warning("device registry probe failed: %s", e)
            return False


# Refusals a registry reload may turn into an acceptance.
_REGISTRY_REASONS = frozenset({"unknown_device", "city_mismatch"})


def make_decoder(holder: RegistryHolder, limits: Limits) -> Callable[[BatchBuilder, RawMessage], None]:
    def decode(batch: BatchBuilder, msg: RawMessage) -> None:
        out = decode_message(batch, holder.registry, msg.topic, msg.payload, msg.received_at_us, limits)
        if out.refusal is not None and out.refusal.reason in _REGISTRY_REASONS and holder.refresh_if_stale():
            out = decode_message(batch, holder.registry, msg.topic, msg.payload, msg.received_at_us, limits)
        _record(batch, holder.registry, msg, out)

    return decode


def _record(batch: BatchBuilder, registry: Registry, msg: RawMessage, out: Decoded) -> None:
    if out.outbound:
        batch.outbound += 1
    elif out.refusal is not None:
        log.info(
            "refused %s on %s%s: %s",
            out.refusal.reason,
            msg.topic[:200],
            " (retained)" if msg.retained else "",
            out.refusal.detail,
        )
        batch.dead_letters.append(
            DeadLetterRow(
                received_at_us=msg.received_at_us,
                topic=msg.topic,
                payload=msg.payload,
                reason=out.refusal.reason,
                detail=out.refusal.detail,
                device_ref=out.device_ref,
                retained=msg.retained,
            )
        )
    elif out.status is not None and out.device_ref is not None:
        batch.statuses.append(StatusRow(registry.devices[out.device_ref], out.status, msg.received_at_us))
