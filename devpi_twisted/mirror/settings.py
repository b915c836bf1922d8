"""What the mirror reads of a mirror index's configuration: the one place its keys are
named (mirror_url, mirror_cache_expiry, mirror_ignore_serial_header,
mirror_no_project_list)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_EXPIRY = 1800

Config = Mapping[str, Any]  # an index's configuration, as stored


def expiry(config: Config, default: float) -> float:
    """Seconds a page (or the project list) is believed without asking upstream."""
    value = config.get("mirror_cache_expiry")
    return float(default if value in (None, "") else value)


def upstream_url(config: Config) -> str:
    """The mirror's upstream (its simple index URL), credentials included."""
    return str(config.get("mirror_url") or "")


def ignores_serial(config: Config) -> bool:
    """Whether an upstream serial behind the stored one is believed all the same."""
    return bool(config.get("mirror_ignore_serial_header"))


def lists_projects(config: Config) -> bool:
    """Whether the mirror keeps upstream's project name list."""
    return not config.get("mirror_no_project_list")
