"""Which devpi-server's API the answers speak: 6.20 (the default) or 7 (``--devpi-api 7``).

Configs are stored in devpi 6's shape (types ``stage``/``mirror``, ``mirror_*`` keys,
``mirror_whitelist``): exports, replicas and the changelog never change with the mode.
Requests may use either spelling (``request_keys``); answers are turned into the mode's
view here and nowhere else: index and user configs, ``/+status`` role names and keys,
``/+api`` features, the devpi-server version shown. Facts from devpi-server 6.20.3 and
7.0.0b4 (what each answers to the same requests).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from devpi_twisted.model.errors import InvalidInput

API_6, API_7 = 6, 7
# the devpi-server release whose answers each mode reproduces
DEVPI_VERSION = {API_6: "6.20.3", API_7: "7.0.0b4"}
_FEATURES_6 = ("push-no-docs", "push-only-docs", "push-register-project",
               "server-keyvalue-parsing")
FEATURES = {API_6: sorted(_FEATURES_6), API_7: sorted((*_FEATURES_6, "projectconfig-v2"))}
TYPE_NAMES_7 = {"stage": "local", "mirror": "remote"}

# devpi 7's remote keys -> the stored devpi 6 key. remote_cache_expiry is no key of
# devpi 7 (it says remote_refresh_delay) but was announced under that name: accepted.
REMOTE_KEYS = {
    "remote_url": "mirror_url", "remote_refresh_delay": "mirror_cache_expiry",
    "remote_cache_expiry": "mirror_cache_expiry", "remote_no_project_list":
    "mirror_no_project_list", "remote_use_external_urls": "mirror_use_external_urls",
    "remote_web_url_fmt": "mirror_web_url_fmt",
}
REMOTE_KEYS_7 = {stored: remote for remote, stored in REMOTE_KEYS.items()
            if remote != "remote_cache_expiry"}
# devpi 7 has no such keys (its import drops them): a mode 7 answer leaves them out
HIDDEN_7 = frozenset({"mirror_ignore_serial_header", "mirror_provides_core_metadata"})
# devpi 7's inheritance keys of a stage and their values (devpi 6: the whitelist keys)
RULE_KEY, TRUST_KEY = "project_inheritance_rules", "trust_inheritance_rules_from"
ALLOW_ALL = "allow all"
BLOCK_REMOTE = "block type:remote if local_exists"
TRUST_MODES = {"none": "intersection", "type:not remote": "union"}

# /+status keys of a replica that devpi 6 also shows as master-* (devpi 7 does not)
_MASTER_ALIASES = {"primary-url": "master-url", "primary-uuid": "master-uuid",
                   "primary-serial": "master-serial",
                   "primary-serial-timestamp": "master-serial-timestamp",
                   "primary-contacted-at": "master-contacted-at",
                   "update-from-primary-at": "update-from-master-at"}


def request_keys(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` with devpi 7's remote keys under the stored name; a key given in both
    spellings with different values is refused, naming both."""
    result: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in body.items():
        stored = REMOTE_KEYS.get(key, key)
        if stored in result and result[stored] != value:
            raise InvalidInput(f"{spelled[stored]} and {key} are one setting given two values")
        result[stored], spelled[stored] = value, key
    return result


def sent_names(keys: Iterable[Any]) -> dict[str, str]:
    """Stored name -> the devpi 7 name a request gave it by, for its error messages."""
    return {REMOTE_KEYS[k]: k for k in keys if isinstance(k, str) and k in REMOTE_KEYS}


def as_sent(error: InvalidInput, sent: Mapping[str, str]) -> InvalidInput:
    """``error`` naming the keys as the request spelled them (``sent_names``)."""
    message = error.message
    for stored, name in sent.items():
        message = message.replace(stored, name)
    return InvalidInput(message)


def request_key(key: str) -> str:
    """The stored name of a key in a PATCH item (``remote_url=...``)."""
    return REMOTE_KEYS.get(key, key)


def inheritance_rules(config: Mapping[str, Any]) -> list[str]:
    """devpi 7's ``project_inheritance_rules`` of a stage config."""
    return [ALLOW_ALL] if "*" in (config.get("mirror_whitelist") or ()) else [BLOCK_REMOTE]


def index_view(config: Mapping[str, Any], api: int) -> dict[str, Any]:
    """A stored index config as the mode's devpi-server shows it."""
    if api == API_6 or not isinstance(config, Mapping):
        return dict(config)
    shown: dict[str, Any] = {}
    for key, value in config.items():
        if key == "type":
            shown[key] = TYPE_NAMES_7.get(value, value)
        elif key == "mirror_whitelist":
            shown[RULE_KEY] = inheritance_rules(config)
        elif key == "mirror_whitelist_inheritance":
            if value == "union":
                shown[TRUST_KEY] = "type:not remote"
        elif key not in HIDDEN_7:
            shown[REMOTE_KEYS_7.get(key, key)] = value
    return shown


def version_view(data: Mapping[str, Any], api: int) -> dict[str, Any]:
    """A version's API data (``+links`` with absolute hrefs) as the mode shows it:
    devpi 7 gives each link its ``relpath`` below the index and no hashes."""
    if api == API_6:
        return dict(data)
    shown = dict(data)
    if isinstance(data.get("+links"), list):
        shown["+links"] = [_link_7(link) for link in data["+links"]]
    if isinstance(data.get("+shadowing"), list):
        shown["+shadowing"] = [version_view(d, api) for d in data["+shadowing"]]
    return shown


def _link_7(link: Mapping[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in link.items() if k not in ("hash_spec", "hashes")}
    href = str(link.get("href", ""))
    for marker in ("/+f/", "/+e/"):
        if marker in href:
            shown["relpath"] = marker[1:] + href.split(marker, 1)[1]
            break
    return shown


def project_config_view(config: Mapping[str, Any], project: str, has_project: bool,
                        api: int) -> dict[str, Any]:
    """A project's configuration (``?v=2``, PATCH answers): devpi 7 names the project in
    it once the index holds the project or a setting of it."""
    if api == API_7 and (has_project or config):
        return {**config, "name": project}
    return dict(config)


def role_name(role: str, api: int) -> str:
    """``/+status``'s ``role``: MASTER (devpi 6) or PRIMARY (devpi 7) for any non-replica."""
    if role == "replica":
        return "REPLICA"
    return "MASTER" if api == API_6 else "PRIMARY"


def status_view(status: Mapping[str, Any], api: int) -> dict[str, Any]:
    """``/+status`` as the mode shows it: a devpi 6 replica also names its primary under
    the ``master-*`` keys devpi 6 kept beside the ``primary-*`` ones; devpi 7 has none."""
    shown = dict(status)
    for key, old in _MASTER_ALIASES.items():
        if api == API_7:
            shown.pop(old, None)
        elif key in shown:
            shown[old] = shown[key]
    return shown
