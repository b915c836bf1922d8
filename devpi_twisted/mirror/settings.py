"""What the mirror reads of a mirror index's configuration (a ``MirrorConfig``): the
page expiry, the upstream URL, whether upstream's serial is believed and whether its
project list is kept."""

from __future__ import annotations

from devpi_twisted.storage.values import MirrorConfig

DEFAULT_EXPIRY = 1800

Config = MirrorConfig  # a mirror index's configuration, as storage parsed it


def expiry(config: Config, default: float) -> float:
    """Seconds a page (or the project list) is believed without asking upstream."""
    value = config.mirror_cache_expiry
    return float(default if value in (None, "") else value)


def upstream_url(config: Config) -> str:
    """The mirror's upstream (its simple index URL), credentials included."""
    return config.mirror_url


def ignores_serial(config: Config) -> bool:
    """Whether an upstream serial behind the stored one is believed all the same."""
    return config.mirror_ignore_serial_header


def lists_projects(config: Config) -> bool:
    """Whether the mirror keeps upstream's project name list."""
    return not config.mirror_no_project_list
