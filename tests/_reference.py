"""docs/reference.md as tests see it: its section anchors and the pointers to them."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference.md"
POINTER = re.compile(r"docs/reference\.md#([A-Za-z0-9][\w-]*)")


def slug(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading: lower case, punctuation dropped, spaces -> -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@cache
def anchors() -> frozenset[str]:
    """Anchors of every heading of docs/reference.md."""
    lines = REFERENCE.read_text(encoding="utf-8").splitlines()
    return frozenset(slug(line.lstrip("#")) for line in lines if re.match(r"#{1,6} ", line))


def pointers(text: str) -> list[str]:
    """The anchors that ``docs/reference.md#<anchor>`` pointers in a text name."""
    return POINTER.findall(text)
