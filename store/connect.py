"""How stages get a database connection: a callable whose result is entered with ``with`` and yields a connection.

Both ``psycopg_pool.ConnectionPool.connection`` (a process's workers share one pool; the connection goes back to it
at the end of the block) and ``functools.partial(psycopg.connect, url)`` (one-off commands and tests; closed at the
end of the block) fit, so the code that uses a connection does not care which it has.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import psycopg

Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]
