"""docs/security.md prints the policy table of api/policy.py as it is."""

from __future__ import annotations

import re
from pathlib import Path

from lccm.api.policy import markdown_table

DOC = Path(__file__).resolve().parent.parent / "docs" / "security.md"


def test_the_security_guide_shows_the_policy_table_as_the_code_has_it() -> None:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(r"<!-- policy-table:start -->\n(.*?)<!-- policy-table:end -->", text, flags=re.DOTALL)
    assert found, "docs/security.md lost its policy-table markers"
    assert found.group(1) == markdown_table(), (
        "docs/security.md's policy table differs from api/policy.py; paste the output of "
        "`python -c 'from lccm.api.policy import markdown_table; print(markdown_table(), end=\"\")'`"
    )
