"""Optional parts of the install (pyproject.toml's extras). A command that needs one that is not installed stops with
one line naming the extra (``lccm.cli.run``: exit 2), never with an ImportError traceback."""

from __future__ import annotations

import importlib.util


class MissingExtra(Exception):
    """A command needs a package of an extra that this install does not have."""

    def __init__(self, extra: str, what: str, alternative: str = "") -> None:
        message = f"{what} needs the '{extra}' extra: pip install 'lccm[{extra}]'"
        super().__init__(f"{message} ({alternative})" if alternative else message)
        self.extra = extra


def require_extra(extra: str, module: str, what: str, alternative: str = "") -> None:
    """Raise MissingExtra unless ``module`` (a package of ``extra``) can be imported."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(extra, what, alternative)
