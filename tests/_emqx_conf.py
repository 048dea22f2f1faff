"""Readers for the EMQX files of the scale-out stack (deploy/emqx/emqx.conf, deploy/emqx/acl.conf), for the checks in
tests/test_compose.py. No EMQX runs here, so these read the subset of HOCON and of the ACL file's Erlang terms that
our files use, and refuse anything else (a file they cannot read fails the tests instead of passing unread).

HOCON subset: ``#``/``//`` comments, objects (``key { ... }``), ``key = value`` / ``key: value``, dotted keys
(``a.b = 1`` is ``a { b = 1 }``), arrays of scalars or objects, quoted and bare scalars. Values stay strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"""(?P<comment>(?:\#|//)[^\n]*)
      | (?P<newline>\n)
      | (?P<space>[ \t\r]+)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<punct>[{}\[\]=:,])
      | (?P<bare>[^\s{}\[\]=:,"\#]+)""",
    re.VERBOSE,
)


class HoconError(ValueError):
    """The file uses HOCON this reader does not know."""


def _tokens(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise HoconError(f"cannot read HOCON at {text[pos : pos + 30]!r}")
        kind = m.lastgroup or ""
        if kind == "string":
            found.append(("scalar", m.group(0)[1:-1].encode().decode("unicode_escape")))
        elif kind == "bare":
            found.append(("scalar", m.group(0)))
        elif kind in ("punct", "newline"):
            found.append((kind if kind == "newline" else m.group(0), m.group(0)))
        pos = m.end()
    return found


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> str:
        return self.toks[self.i][0] if self.i < len(self.toks) else "eof"

    def take(self, kind: str) -> str:
        if self.peek() != kind:
            raise HoconError(f"expected {kind!r}, got {self.peek()!r} at token {self.i}")
        value = self.toks[self.i][1]
        self.i += 1
        return value

    def skip_separators(self) -> None:
        while self.peek() in ("newline", ","):
            self.i += 1

    def object(self, closing: str) -> dict[str, Any]:
        result: dict[str, Any] = {}
        self.skip_separators()
        while self.peek() != closing:
            path = self.take("scalar").split(".")
            if self.peek() in ("=", ":"):
                self.i += 1
            elif self.peek() != "{":
                raise HoconError(f"{'.'.join(path)}: expected '=', ':' or '{{'")
            value = self.value()
            target = result
            for part in path[:-1]:
                target = target.setdefault(part, {})
            if isinstance(value, dict) and isinstance(target.get(path[-1]), dict):
                target[path[-1]].update(value)  # HOCON merges an object given twice
            else:
                target[path[-1]] = value
            self.skip_separators()
        if closing != "eof":
            self.take(closing)
        return result

    def value(self) -> Any:
        kind = self.peek()
        if kind == "{":
            self.i += 1
            return self.object("}")
        if kind == "[":
            self.i += 1
            items = []
            self.skip_separators()
            while self.peek() != "]":
                items.append(self.value())
                self.skip_separators()
            self.take("]")
            return items
        return self.take("scalar")


def parse_hocon(text: str) -> dict[str, Any]:
    return _Parser(text).object("eof")


def get(conf: dict[str, Any], dotted: str) -> Any:
    node: Any = conf
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


# --- acl.conf -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AclRule:
    permission: str  # allow | deny
    who: str  # all, or e.g. {clientid, {re, "^lccm-ingest-[0-9]+$"}}, as written
    action: str  # publish | subscribe | all ("" for the catch-all {deny, all})
    topics: tuple[str, ...]

    def clientid_pattern(self) -> str | None:
        m = re.fullmatch(r'\{clientid, \{re, "(?P<re>[^"]*)"\}\}', self.who)
        return m.group("re") if m else None


# The forms our file uses: who is `all`, `{clientid, "id"}` or `{clientid, {re, "pattern"}}`.
_WHO = r'all|\{clientid, "[^"]*"\}|\{clientid, \{re, "[^"]*"\}\}'
_RULE = re.compile(
    rf"""\{{(?P<perm>allow|deny),\s*(?P<who>{_WHO}),\s*(?P<action>publish|subscribe|all),\s*\[(?P<topics>[^\]]*)\]\}}\."""
)
_CATCH_ALL = re.compile(r"\{(?P<perm>allow|deny),\s*all\}\.")


def parse_acl(text: str) -> list[AclRule]:
    """Every rule of the file, in order. A statement that is neither form is an error (EMQX would refuse the file)."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("%"))
    statements = [s.strip() + "}." for s in re.split(r"\}\.[ \t]*(?:\n|$)", body) if s.strip()]
    rules: list[AclRule] = []
    for statement in statements:
        m = _RULE.fullmatch(statement)
        if m:
            topics = tuple(t.strip().strip('"') for t in m.group("topics").split(",") if t.strip())
            rules.append(AclRule(m.group("perm"), m.group("who"), m.group("action"), topics))
            continue
        m = _CATCH_ALL.fullmatch(statement)
        if m:
            rules.append(AclRule(m.group("perm"), "all", "", ()))
            continue
        raise ValueError(f"not an ACL rule this file may hold: {statement!r}")
    return rules


def topic_matches(topic: str, pattern: str) -> bool:
    """MQTT matching of a topic (or, for a subscribe check, a topic filter) against a rule's filter."""
    words, filters = topic.split("/"), pattern.split("/")
    for i, f in enumerate(filters):
        if f == "#":
            return True
        if i >= len(words) or (f != "+" and f != words[i]):
            return False
    return len(words) == len(filters)


def acl_allows(rules: list[AclRule], clientid: str, action: str, topic: str) -> bool:
    """The decision of the first rule that matches (EMQX's file source: rules in order, first match decides; the
    ${clientid} placeholder rendered), deny when none does (authorization.no_match = deny)."""
    for rule in rules:
        if rule.action == "" and rule.who == "all":
            return rule.permission == "allow"
        pattern = rule.clientid_pattern()
        exact = re.fullmatch(r'\{clientid, "(?P<id>[^"]*)"\}', rule.who)
        if rule.who != "all" and not (
            (pattern is not None and re.search(pattern, clientid)) or (exact and exact.group("id") == clientid)
        ):
            continue
        if rule.action not in ("all", action):
            continue
        if any(topic_matches(topic, t.replace("${clientid}", clientid)) for t in rule.topics):
            return rule.permission == "allow"
    return False
