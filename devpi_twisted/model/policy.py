"""Supply-chain policy of an index (issue 23): minimum release age, constraints, blocks.

Index keys (validated here, stored in the index config as given, normalised):

- ``min_release_age``: ``<n>d``, ``<n>h`` or ``<n>m``. Files of mirrored projects whose
  upstream upload time (PEP 700), else the time the mirror first saw them, is younger
  are left out; a version whose files are all left out disappears. Private uploads are
  never held back.
- ``min_release_age_exempt``: project names (normalised) the age does not apply to.
- ``constraints``: requirement specifiers (``django>=4.2,<5``, ``requests``, ``*``); of
  the projects an index inherits (from its bases, mirrors included), only versions
  satisfying them are served, and only the listed projects unless ``*`` is present.
- ``blocks``: set through ``+block``/``+unblock`` only: each ``{project, version?,
  filename?, reason, by, at}``; what matches disappears from every page of an index
  whose resolution order contains the blocking index, and its download is refused.

Which setting applies (through inheritance): for ``min_release_age`` (with its exempt
list) and ``constraints`` each, the requested index's own value if it sets the key,
else that of the first index in its resolution order (model.md 6.1, stages breadth
first, mirrors last) that sets it. So a stage without settings over a mirror with an
age gets the mirror's age; a stage's own value overrides its bases'. Blocks of every
index of the order apply.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

import attrs
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.names import normalize_project

AGE_KEY, EXEMPT_KEY, CONSTRAINTS_KEY, BLOCKS_KEY = (
    "min_release_age", "min_release_age_exempt", "constraints", "blocks")
POLICY_KEYS = frozenset({AGE_KEY, EXEMPT_KEY, CONSTRAINTS_KEY})
MAX_CONSTRAINTS = 1000
MAX_SPEC = 500
MAX_REASON = 1000
MAX_BLOCKS = 10000
_DURATION = re.compile(r"(\d{1,6})([dhm])")
_UNIT = {"d": 86400, "h": 3600, "m": 60}


def parse_duration(value: Any) -> int:
    """Seconds of ``7d``, ``36h``, ``90m``; InvalidInput naming ``min_release_age``."""
    match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise InvalidInput(f"min_release_age: {str(value)[:100]!r} is not a duration "
                           "like 7d, 36h or 90m")
    return int(match.group(1)) * _UNIT[match.group(2)]


def check_age(value: Any) -> str | None:
    """The stored form of ``min_release_age`` ("" or None: not set)."""
    if value is None or value == "":
        return None
    parse_duration(value)
    return str(value).strip()


def check_constraint(spec: Any) -> str:
    """A requirement specifier as stored (``*`` or packaging's form); InvalidInput naming it."""
    text = str(spec).strip()
    if text == "*":
        return text
    try:
        if len(text) > MAX_SPEC:
            raise InvalidRequirement("too long")
        req = Requirement(text)
    except InvalidRequirement:
        raise InvalidInput(f"constraints: {text[:100]!r} is not a requirement "
                           "specifier") from None
    if req.url or req.marker or req.extras:
        raise InvalidInput(f"constraints: {text[:100]!r} may only name a project "
                           "and versions")
    return f"{normalize_project(req.name)}{req.specifier}"


def check_constraints(items: Sequence[str]) -> list[str]:
    if len(items) > MAX_CONSTRAINTS:
        raise InvalidInput(f"constraints: more than {MAX_CONSTRAINTS} specifiers")
    return list(dict.fromkeys(check_constraint(item) for item in items))


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch of an ISO 8601 time (PEP 700), None if not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


def iso_date(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


@attrs.frozen
class Block:
    project: str
    version: str | None
    filename: str | None
    reason: str
    by: str
    at: float
    index: str = ""  # the blocking index (set when collected along an order)

    def matches(self, project: str, version: str | None, filename: str) -> bool:
        return self.project == project and self.version in (None, version) and \
            self.filename in (None, filename)

    def to_json(self) -> dict[str, Any]:
        return {"project": self.project, "version": self.version, "filename": self.filename,
                "reason": self.reason, "by": self.by, "at": iso_date(self.at)}


def parse_block(item: Mapping[str, Any], by: str, at: float) -> Block:
    """A block from a ``+block`` body; InvalidInput naming the field."""
    if not isinstance(item, Mapping):
        raise InvalidInput('expected {"project": ..., "version"?, "filename"?, "reason": ...}')
    unknown = set(item) - {"project", "version", "filename", "reason"}
    if unknown:
        raise InvalidInput(f"{sorted(unknown)[0]}: unknown field of a block")
    fields = {}
    for key in ("project", "version", "filename", "reason"):
        value = item.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()
                                  or len(value) > MAX_REASON):
            raise InvalidInput(f"{key}: must be a non-empty text of at most {MAX_REASON} "
                               "characters")
        fields[key] = value.strip() if isinstance(value, str) else None
    if not fields["project"]:
        raise InvalidInput("project: required")
    if not fields["reason"]:
        raise InvalidInput("reason: required")
    return Block(normalize_project(str(fields["project"])), fields["version"],
                 fields["filename"], str(fields["reason"]), by, at)


def stored_blocks(value: Any) -> tuple[Block, ...]:
    """Blocks of a stored config's ``blocks`` list (bad entries skipped)."""
    found = []
    for item in value or ():
        if isinstance(item, Mapping) and isinstance(item.get("project"), str):
            found.append(Block(item["project"], item.get("version"), item.get("filename"),
                               str(item.get("reason", "")), str(item.get("by", "")),
                               parse_time(item.get("at")) or 0.0))
    return tuple(found)


def check_blocks(value: Any) -> list[dict[str, Any]]:
    """The stored ``blocks`` list (from an export or a config written by +block)."""
    if not isinstance(value, list) or len(value) > MAX_BLOCKS:
        raise InvalidInput("blocks: must be a list (set through +block)")
    return [block.to_json() for block in stored_blocks(value)]


@attrs.frozen
class Held:
    """A version (or one file of it) the index does not offer, and why."""

    version: str
    rule: str  # "age", "constraint", "blocked", "not listed"
    detail: str
    filename: str | None = None
    until: float | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": self.version, "rule": self.rule,
                                "detail": self.detail}
        if self.filename is not None:
            data["filename"] = self.filename
        if self.until is not None:
            data["until"] = iso_date(self.until)
        return data


@attrs.frozen
class Policy:
    """The rules in force for one requested index (see the module docstring)."""

    min_age: int | None = None
    exempt: frozenset[str] = frozenset()
    constraints: Mapping[str, tuple[str, SpecifierSet]] | None = None  # None: none set
    star: bool = False
    blocks: tuple[Block, ...] = ()

    @property
    def empty(self) -> bool:
        return self.min_age is None and self.constraints is None and not self.blocks

    def listed(self, project: str) -> bool:
        """Whether the constraints let ``project`` be served at all (if inherited)."""
        return self.constraints is None or self.star or project in self.constraints

    def blocked(self, project: str, version: str | None, filename: str) -> Block | None:
        for block in self.blocks:
            if block.matches(project, version, filename):
                return block
        return None

    def age_hold(self, project: str, when: float | None, now: float) -> float | None:
        """Until when a file of ``project`` seen at ``when`` is held back (None: not)."""
        if self.min_age is None or project in self.exempt or when is None:
            return None
        until = when + self.min_age
        return until if until > now else None

    def constraint_hold(self, project: str, version: str) -> str | None:
        """The text of the rule hiding ``version`` of ``project``, None if served."""
        if self.constraints is None:
            return None
        entry = self.constraints.get(project)
        if entry is None:
            return None if self.star else "not in the constraint list"
        spec, specifier = entry
        if not str(specifier):
            return None
        try:
            ok = specifier.contains(Version(version), prereleases=True)
        except InvalidVersion:
            ok = False
        return None if ok else f"constraint {spec}"


@functools.lru_cache(maxsize=1024)
def _constraints(specs: tuple[str, ...]) -> tuple[Mapping[str, tuple[str, SpecifierSet]], bool]:
    found: dict[str, tuple[str, SpecifierSet]] = {}
    for spec in specs:
        if spec == "*":
            continue
        try:
            req = Requirement(spec)
        except InvalidRequirement:
            continue
        name = normalize_project(req.name)
        if name in found:  # two lines for one project: both must hold
            found[name] = (f"{found[name][0]}, {spec}", found[name][1] & req.specifier)
        else:
            found[name] = (spec, req.specifier)
    return found, "*" in specs


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(i.strip() for i in value.split(",") if i.strip())
    return tuple(str(i) for i in value or ())


def policy_of(order: Iterable[tuple[str, Mapping[str, Any]]]) -> Policy:
    """The policy of the first index of ``order`` ((name, config JSON) in resolution
    order, the requested index first): see the module docstring."""
    age: int | None = None
    exempt: frozenset[str] = frozenset()
    constraints = None
    star = False
    age_set = constraints_set = False
    blocks: list[Block] = []
    for name, config in order:
        if not age_set and config.get(AGE_KEY):
            age_set = True
            try:
                age = parse_duration(config[AGE_KEY])
            except InvalidInput:
                age = None
            exempt = frozenset(normalize_project(n) for n in _names(config.get(EXEMPT_KEY)))
        if not constraints_set and config.get(CONSTRAINTS_KEY):
            constraints_set = True
            constraints, star = _constraints(_names(config[CONSTRAINTS_KEY]))
        blocks += [attrs.evolve(b, index=name) for b in stored_blocks(config.get(BLOCKS_KEY))]
    return Policy(age, exempt, constraints, star, tuple(blocks))


class _Link(Protocol):
    @property
    def stage(self) -> str: ...
    @property
    def filename(self) -> str: ...
    @property
    def upload_time(self) -> str | None: ...
    @property
    def first_seen(self) -> str | None: ...


L = TypeVar("L", bound=_Link)


@attrs.frozen
class Filtered(Generic[L]):
    kept: list[L]
    held: tuple[Held, ...]
    due: float | None  # when the first file held back for its age is released


def filter_links(policy: Policy, project: str, links: Sequence[L], requested: str,
                 mirrors: frozenset[str], version_of: Callable[[str], str | None],
                 now: float) -> Filtered[L]:
    """The links ``policy`` lets the requested index serve: the age applies to links of
    ``mirrors``, constraints and blocks to every link not of ``requested`` itself."""
    if policy.empty:
        return Filtered(list(links), (), None)
    kept: list[L] = []
    held: list[Held] = []
    due: float | None = None
    listed = policy.listed(project)
    for link in links:
        if link.stage == requested and link.stage not in mirrors:
            kept.append(link)
            continue
        version = version_of(link.filename)
        shown = version or "?"
        block = policy.blocked(project, version, link.filename)
        if block is not None:
            held.append(Held(shown, "blocked", f"blocked by {block.by} on {iso_date(block.at)}"
                             f": {block.reason}", link.filename))
            continue
        if not listed:
            held.append(Held(shown, "not listed", "not in the constraint list", link.filename))
            continue
        rule = policy.constraint_hold(project, shown)
        if rule is not None:
            held.append(Held(shown, "constraint", rule, link.filename))
            continue
        if link.stage in mirrors:
            when = parse_time(link.upload_time) or parse_time(link.first_seen)
            until = policy.age_hold(project, when, now)
            if until is not None:
                held.append(Held(shown, "age", f"age until {iso_date(until)}", link.filename,
                                 until))
                due = until if due is None else min(due, until)
                continue
        kept.append(link)
    return Filtered(kept, tuple(held), due)


def held_versions(held: Sequence[Held], offered: Iterable[str]) -> list[dict[str, Any]]:
    """``?policy``'s list: per version not offered at all, its rules; versions still
    offered with some files held back are listed with those files."""
    shown = set(offered)
    found: dict[str, dict[str, Any]] = {}
    for item in held:
        entry = found.setdefault(item.version, {
            "version": item.version, "offered": item.version in shown, "rules": [],
            "files": []})
        rule = item.to_json()
        text = {"rule": rule["rule"], "detail": rule["detail"], **(
            {"until": rule["until"]} if "until" in rule else {})}
        if text not in entry["rules"]:
            entry["rules"].append(text)
        entry["files"].append(item.filename)
    return list(found.values())


# /+metrics: requests answered with something left out, by the rule
STAT_KEYS = {"age": "policy_held_back", "constraint": "policy_constrained",
             "not listed": "policy_constrained", "blocked": "policy_blocked"}


def count_held(stats: dict[str, int], held: Sequence[Held]) -> None:
    """Count one request whose answer left out ``held`` (once per rule kind)."""
    for key in {STAT_KEYS[h.rule] for h in held}:
        stats[key] = stats.get(key, 0) + 1
