"""The pages' message catalogue, one module per area; api/web/i18n.py merges them."""

from __future__ import annotations

from typing import Literal

Lang = Literal["th", "en"]
Catalogue = dict[str, dict[Lang, str]]


def merge(*catalogues: Catalogue) -> Catalogue:
    merged: Catalogue = {}
    for catalogue in catalogues:
        for key, both in catalogue.items():
            if key in merged:
                raise ValueError(f"message {key!r} is defined twice")
            if set(both) != {"th", "en"} or not all(both.values()):
                raise ValueError(f"message {key!r} needs both a Thai and an English text")
            merged[key] = both
    return merged
