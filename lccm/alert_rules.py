"""The alert-rule file (the shipped ``lccm/data/alert-rules.yaml``, or ``LCCM_ALERT_RULES_FILE``): read, validate
every rule, report every problem at once.

The file is ``rules:``, a list of rule mappings in the shape of :class:`engine.alerts.AlertRule` (the API takes the
same shape). An error names the rule (its key, or its position when the key itself is missing) and the field, e.g.
``rule 'so2_mae_moh' field raise.above: Input should be a valid number``. With the metric catalogue's keys given,
a rule on a metric the catalogue does not have is an error too.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lccm.engine.alerts import AlertRule


@dataclass(frozen=True, slots=True)
class RuleError:
    rule: str  # the rule's key, or "#<position>" (1-based) when it has none
    field: str  # dotted path inside the rule, "" for the rule as a whole
    message: str

    def __str__(self) -> str:
        where = f" field {self.field}" if self.field else ""
        return f"rule {self.rule!r}{where}: {self.message}"


class AlertRulesInvalid(ValueError):
    def __init__(self, source: str, errors: Sequence[RuleError]) -> None:
        self.source = source
        self.errors = list(errors)
        lines = "\n  ".join(str(e) for e in self.errors)
        super().__init__(f"{len(self.errors)} problem(s) in alert rules from {source}:\n  {lines}")


def validation_errors(rule: str, err: ValidationError) -> list[RuleError]:
    """One RuleError per pydantic error, with the field path as written in the file (aliases: raise, for)."""
    out = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"] if p not in ("function-after[_consistent()]",))
        msg = e["msg"].removeprefix("Value error, ")
        out.append(RuleError(rule, path, msg))
    return out


def check_rule(
    definition: Any, position: int, metric_keys: Collection[str] | None = None
) -> tuple[AlertRule | None, list[RuleError]]:
    """Validate one rule mapping; returns the rule or the errors (naming the rule by key or position)."""
    label = f"#{position}"
    if isinstance(definition, dict) and isinstance(definition.get("key"), str):
        label = definition["key"]
    if not isinstance(definition, dict):
        return None, [RuleError(label, "", f"a rule is a mapping of fields, not {type(definition).__name__}")]
    try:
        rule = AlertRule.model_validate(definition)
    except ValidationError as e:
        return None, validation_errors(label, e)
    if metric_keys is not None and rule.metric is not None and rule.metric not in metric_keys:
        known = ", ".join(sorted(metric_keys))
        return None, [RuleError(label, "metric", f"unknown metric {rule.metric!r}; the catalogue has {known}")]
    return rule, []


def parse_rules(
    definitions: Any, source: str = "<rules>", metric_keys: Collection[str] | None = None
) -> list[AlertRule]:
    """Validate a list of rule mappings; raises AlertRulesInvalid listing every problem."""
    if not isinstance(definitions, list):
        raise AlertRulesInvalid(source, [RuleError("-", "rules", "expected a list of rules")])
    rules: list[AlertRule] = []
    errors: list[RuleError] = []
    seen: set[str] = set()
    for i, d in enumerate(definitions, start=1):
        rule, problems = check_rule(d, i, metric_keys)
        errors += problems
        if rule is None:
            continue
        if rule.key in seen:
            errors.append(RuleError(rule.key, "key", f"the key {rule.key!r} is used by an earlier rule"))
        seen.add(rule.key)
        rules.append(rule)
    if errors:
        raise AlertRulesInvalid(source, errors)
    return rules


def load_rules_file(path: Path | str | Traversable, metric_keys: Collection[str] | None = None) -> list[AlertRule]:
    """Read and validate a rule file (YAML with a top-level ``rules:`` list)."""
    p = Path(path) if isinstance(path, str) else path
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise AlertRulesInvalid(str(p), [RuleError("-", "", f"cannot read the file: {e}")]) from e
    if not isinstance(doc, dict) or "rules" not in doc:
        raise AlertRulesInvalid(str(p), [RuleError("-", "rules", "the file needs a top-level 'rules:' list")])
    return parse_rules(doc["rules"], str(p), metric_keys)


def default_rules_file() -> Traversable:
    """The shipped rules (package data ``lccm/data/alert-rules.yaml``)."""
    return resources.files("lccm").joinpath("data", "alert-rules.yaml")
