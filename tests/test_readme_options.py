"""Every option ``twistd devpi --help`` lists has a row in one of README.rst's option
tables, with the same default, and every row names an option that exists (issue 19,
item 17). An option added later fails here until the README has its row."""

from __future__ import annotations

import re
from pathlib import Path

from devpi_twisted.service import Options

README = Path(__file__).resolve().parent.parent / "README.rst"
GENERIC = {"help", "version"}  # every twistd plugin has them
HELP_LINE = re.compile(r"^\s+(?:-\w, )?--(?P<name>[\w-]+)=?\s+(?P<help>.*?)"
                       r"(?:\s+\[default: (?P<default>.*)\])?$")
README_DEFAULT = re.compile(r"\bdefault\s+``([^`]*)``")


def help_options() -> dict[str, str | None]:
    """Option name -> the default ``--help`` shows (None: it shows none)."""
    options: dict[str, str | None] = {}
    for line in Options().getUsage(width=100_000).splitlines():
        match = HELP_LINE.match(line)
        if match and match["name"] not in GENERIC:
            options[match["name"]] = match["default"]
    return options


def simple_tables(text: str) -> list[list[tuple[str, str]]]:
    """The two-column reStructuredText simple tables: (first cell, second cell) per row,
    continuation lines (empty first cell) joined to their row."""
    tables = []
    lines = text.splitlines()
    border = re.compile(r"^(=+)  +=+\s*$")
    i = 0
    while i < len(lines):
        match = border.match(lines[i])
        if not match:
            i += 1
            continue
        width = len(match.group(1))
        end = next(j for j in range(i + 1, len(lines)) if border.match(lines[j]))
        rows: list[tuple[str, str]] = []
        for line in lines[i + 1:end]:
            first, second = line[:width].strip(), line[width:].strip()
            if first:
                rows.append((first, second))
            elif rows and second:
                rows[-1] = (rows[-1][0], f"{rows[-1][1]} {second}")
        tables.append(rows)
        i = end + 1
    return tables


def readme_options() -> dict[str, list[str]]:
    """Option name -> the text of each README table row naming it in its first cell."""
    found: dict[str, list[str]] = {}
    for rows in simple_tables(README.read_text(encoding="utf-8")):
        for first, text in rows:
            for name in re.findall(r"``(?:-\w``, ``)?--([\w-]+)", first):
                found.setdefault(name, []).append(text)
    return found


def test_help_is_parsed() -> None:
    options = help_options()
    assert options["serverdir"] == "~/.devpi/server" and options["port"] == "3141"
    assert "offline-mode" in options and options["offline-mode"] is None
    assert "configfile" in options


def test_every_option_has_one_readme_row_with_its_default() -> None:
    options = help_options()
    rows = readme_options()
    missing = sorted(set(options) - set(rows))
    assert not missing, f"README.rst option tables lack rows for: {', '.join(missing)}"
    unknown = sorted(set(rows) - set(options))
    assert not unknown, f"README.rst option tables name options --help lacks: {unknown}"
    twice = sorted(name for name, texts in rows.items() if len(texts) > 1)
    assert not twice, f"options with more than one README row: {twice}"
    wrong = {}
    for name, default in options.items():
        said = README_DEFAULT.findall(rows[name][0])
        if said != ([default] if default is not None else []):
            wrong[name] = (default, said)
    assert not wrong, f"README defaults differ from --help (help, README): {wrong}"
