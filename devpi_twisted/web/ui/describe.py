"""Long descriptions as HTML through readme-renderer (reStructuredText, Markdown for a
``text/markdown`` content type, plain text), sanitised by it; the HTML kept by the
hash of the text and its content type, so each description is rendered once. Tox
results summarised (pass/fail per environment, with their output), kept by the
hash of the stored report."""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import attrs

MAX_DESCRIPTION = 512 * 1024  # characters rendered; longer ones are cut there
MAX_TOX_REPORT = 2 * 1024 * 1024  # bytes of a tox report read to show it
MAX_OUTPUT = 64 * 1024  # characters of a command's output shown
CACHED = 1024
# headings of sanitised HTML (text is escaped there: "<h" starts a tag and nothing else)
_HEADING = re.compile(r"<(/?)h([1-6])\b")


def demoted(html: str) -> str:
    """Headings two levels down (h1 -> h3, at most h6): the page has the only h1 and
    the description sits under its h2."""
    return _HEADING.sub(lambda m: f"<{m.group(1)}h{min(6, int(m.group(2)) + 2)}", html)


def _media(content_type: str) -> tuple[str, str]:
    """(media type, markdown variant) of a Description-Content-Type."""
    media, _, params = (content_type or "").partition(";")
    variant = "GFM"
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "variant" and value.strip() in ("GFM", "CommonMark"):
            variant = value.strip()
    return media.strip().lower(), variant


def render_description(text: str, content_type: str) -> str:
    """Sanitised HTML of a description (readme-renderer); reStructuredText that does
    not render falls back to plain text. readme-renderer (docutils, pygments, comrak,
    nh3: 8 MB resident) is imported at the first description shown."""
    from readme_renderer import markdown, rst, txt
    text = text[:MAX_DESCRIPTION]
    media, variant = _media(content_type)
    rendered: str | None
    if media == "text/markdown":
        rendered = markdown.render(text, variant=variant)
    elif media == "text/plain":
        rendered = txt.render(text)
    else:
        rendered = rst.render(text)
    if rendered is None:
        rendered = txt.render(text)
    return demoted(rendered or "")


class Rendered:
    """Rendered descriptions by sha256 of (content type, text), the most recent kept."""

    def __init__(self, size: int = CACHED) -> None:
        self._size = size
        self._html: OrderedDict[str, str] = OrderedDict()

    @staticmethod
    def key(text: str, content_type: str) -> str:
        return hashlib.sha256(f"{content_type}\0{text}".encode("utf-8", "replace")).hexdigest()

    def get(self, key: str) -> str | None:
        found = self._html.get(key)
        if found is not None:
            self._html.move_to_end(key)
        return found

    def put(self, key: str, html: str) -> None:
        self._html[key] = html
        if len(self._html) > self._size:
            self._html.popitem(last=False)


@attrs.frozen
class ToxEnv:
    """One environment of a tox report."""

    name: str
    passed: bool
    commands: tuple[tuple[str, int | None, str], ...]  # (command, retcode, output)


@attrs.frozen
class ToxReport:
    host: str
    platform: str
    envs: tuple[ToxEnv, ...]
    problem: str = ""  # why the report could not be read


def _command(entry: Any) -> tuple[str, int | None, str]:
    if not isinstance(entry, Mapping):
        return "", None, ""
    command = entry.get("command")
    shown = " ".join(map(str, command)) if isinstance(command, list) else str(command or "")
    code = entry.get("retcode")
    try:
        retcode = int(code) if code is not None else None
    except (TypeError, ValueError):
        retcode = None
    return shown, retcode, str(entry.get("output") or "")[:MAX_OUTPUT]


def summarise_tox(data: bytes) -> ToxReport:
    """Pass/fail per environment of a tox JSON report: an environment fails if a setup
    or test command returned non-zero, passes if its tests ran and all returned 0."""
    if len(data) > MAX_TOX_REPORT:
        return ToxReport("", "", (), f"report larger than {MAX_TOX_REPORT} bytes")
    try:
        report = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ToxReport("", "", (), "not JSON")
    if not isinstance(report, Mapping):
        return ToxReport("", "", (), "not a JSON object")
    envs = []
    testenvs = report.get("testenvs")
    for name, env in (testenvs.items() if isinstance(testenvs, Mapping) else ()):
        if not isinstance(env, Mapping):
            continue
        commands: list[tuple[str, int | None, str]] = []
        for phase in ("setup", "test"):
            entries = env.get(phase)
            commands.extend(_command(e) for e in (entries if isinstance(entries, list) else ()))
        ran_tests = isinstance(env.get("test"), list) and bool(env["test"])
        passed = ran_tests and all(code == 0 for _, code, _ in commands if code is not None)
        envs.append(ToxEnv(str(name), passed, tuple(commands)))
    return ToxReport(str(report.get("host") or ""), str(report.get("platform") or ""),
                     tuple(envs))
