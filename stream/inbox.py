"""The queue between the MQTT network thread and the stream loop, bounded in bytes of queued messages.

A message counts its payload and topic plus a fixed overhead for the objects around them (``MESSAGE_OVERHEAD``).
When the queued bytes reach the budget, ``put`` waits (backpressure): the network thread stops reading, TCP and the
broker hold the rest, and MQTT's receive maximum bounds what the broker pushes unacknowledged. Nothing is dropped: a
message handed to ``put`` is always queued, and a message is acknowledged only after the batch holding it is
committed. One message is admitted into an empty inbox whatever its size, so a message larger than the budget
still passes (the contract's payload limit bounds it).

While ``put`` waits, paho's network thread sends no keep-alives: an outage of the database longer than about 1.5
keep-alive intervals makes the broker drop the connection; paho reconnects, and the broker redelivers what was not
acknowledged (the database's key makes the second copy a no-op).

The interface is ``queue.SimpleQueue``'s (``put``, ``get``, ``get_nowait``, ``qsize``, ``empty``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque

from lccm.stream.loop import RawMessage

MESSAGE_OVERHEAD = 256  # bytes per queued message beyond payload and topic: RawMessage, token tuple, ints


def message_bytes(msg: RawMessage) -> int:
    return len(msg.payload) + len(msg.topic) + MESSAGE_OVERHEAD


class ByteBoundedInbox:
    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes <= 0:
            raise ValueError("the inbox budget must be positive")
        self.budget_bytes = budget_bytes
        self._items: deque[RawMessage] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self.waits = 0  # times a put had to wait for room (backpressure applied)
        self.peak_bytes = 0

    @property
    def queued_bytes(self) -> int:
        with self._cond:
            return self._bytes

    def qsize(self) -> int:
        with self._cond:
            return len(self._items)

    def empty(self) -> bool:
        return self.qsize() == 0

    def put(self, msg: RawMessage, timeout: float | None = None) -> None:
        """Queue ``msg``, first waiting while the budget is used up (and something is queued). With a timeout,
        raises ``queue.Full`` when no room came in time (the message is then not queued)."""
        self.put_many([msg], timeout)

    def put_many(self, msgs: list[RawMessage], timeout: float | None = None) -> None:
        """Queue ``msgs`` together (what one read from the broker's socket brought), waiting as ``put`` does for room
        for all of them; a group larger than the budget is admitted into an empty inbox. One lock and one wake-up
        of the stream thread for the group: per message they were a fifth of the MQTT thread's time."""
        size = sum(len(m.payload) + len(m.topic) for m in msgs) + MESSAGE_OVERHEAD * len(msgs)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._items and self._bytes + size > self.budget_bytes:
                self.waits += 1
                while self._items and self._bytes + size > self.budget_bytes:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise queue.Full
                    self._cond.wait(left)
            self._items.extend(msgs)
            self._bytes += size
            self.peak_bytes = max(self.peak_bytes, self._bytes)
            self._cond.notify_all()

    def get(self, block: bool = True, timeout: float | None = None) -> RawMessage:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if not block:
                    raise queue.Empty
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise queue.Empty
                self._cond.wait(left)
            msg = self._items.popleft()
            self._bytes -= message_bytes(msg)
            self._cond.notify_all()
            return msg

    def get_nowait(self) -> RawMessage:
        return self.get(block=False)
