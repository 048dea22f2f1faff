"""A TCP proxy in front of the shared PostgreSQL that a test can cut (in the spirit of psycopg's tests/fix_proxy.py).

``Proxy()`` listens on 127.0.0.1:<free port> and forwards every connection to 127.0.0.1:5432. ``cut()`` resets every
live connection and refuses new ones (accepted and reset at once, as a stopped server's port would) until
``restore()``: to the clients it is a database outage, while the shared server, which other people's tests use,
never stops. One thread accepts; one thread per connection copies bytes both ways.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading

from psycopg.conninfo import conninfo_to_dict, make_conninfo


class Proxy:
    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._refusing = threading.Event()
        self._closed = threading.Event()
        self.accepted = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._accept, name="test-pg-proxy", daemon=True)
        self._thread.start()

    def url(self, database_url: str) -> str:
        """``database_url`` through the proxy."""
        params = conninfo_to_dict(database_url)
        params.update(host="127.0.0.1", port=str(self.port))
        return make_conninfo(**params)  # type: ignore[arg-type]

    def cut(self) -> int:
        """Reset every live connection and refuse new ones; returns how many were cut."""
        self._refusing.set()
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for a, b in pairs:
            _reset(a)
            _reset(b)
        return len(pairs)

    def restore(self) -> None:
        self._refusing.clear()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self._thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._refusing.is_set():
                self.refused += 1
                _reset(client)
                continue
            try:
                server = socket.create_connection(self._target, timeout=5)
            except OSError:
                _reset(client)
                continue
            self.accepted += 1
            pair = (client, server)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), name="test-pg-proxy-conn", daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, server = pair
        sel = selectors.DefaultSelector()
        try:
            sel.register(client, selectors.EVENT_READ, server)
            sel.register(server, selectors.EVENT_READ, client)
            while True:
                for key, _ in sel.select(timeout=0.5):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return  # cut, or closed by either side
        finally:
            sel.close()
            with self._lock:
                self._pairs.discard(pair)
            _reset(client)
            _reset(server)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed server's connections end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
