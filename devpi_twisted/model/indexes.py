"""Index configuration: defaults, normalisation, validation, PATCH forms (spec/model.md section 3).

Configs are plain JSON-able dicts as stored and returned by the API. Functions here
are pure: ``others`` maps every existing index name ``user/index`` to its config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from devpi_twisted.model.acl import ANONYMOUS, normalize_principal
from devpi_twisted.model.devpi_api import (ALLOW_ALL, BLOCK_REMOTE, RULE_KEY, TRUST_KEY,
                                           TRUST_MODES, as_sent, inheritance_rules,
                                           request_key, request_keys, sent_names)
from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.mirror_url import check_mirror_url
from devpi_twisted.model.names import check_name, normalize_project
from devpi_twisted.model.policy import AGE_KEY, BLOCKS_KEY, CONSTRAINTS_KEY, EXEMPT_KEY, \
    check_age, check_blocks, check_constraints
from devpi_twisted.storage.values import IndexConfig, StageConfig

STAGE = "stage"
MIRROR = "mirror"
TYPE_ALIASES = {"stage": STAGE, "local": STAGE, "mirror": MIRROR, "remote": MIRROR}

COMMON_KEYS = frozenset({"type", "volatile", "title", "description", "custom_data", "acl_read",
                         AGE_KEY, EXEMPT_KEY, CONSTRAINTS_KEY, BLOCKS_KEY})
STAGE_KEYS = COMMON_KEYS | {
    "bases", "acl_upload", "acl_toxresult_upload", "mirror_whitelist",
    "mirror_whitelist_inheritance",
}
MIRROR_KEYS = COMMON_KEYS | {
    "mirror_url", "mirror_cache_expiry", "mirror_web_url_fmt", "mirror_no_project_list",
    "mirror_use_external_urls", "mirror_ignore_serial_header", "mirror_provides_core_metadata",
}
# Sent for mirrors by old exports and clients; devpi drops them silently.
MIRROR_DROPPED_KEYS = frozenset({"bases", "acl_upload", "mirror_whitelist", "pypi_whitelist"})
LIST_KEYS = frozenset({"bases", "acl_upload", "acl_toxresult_upload", "mirror_whitelist",
                       "acl_read", EXEMPT_KEY, CONSTRAINTS_KEY})
ACL_KEYS = ("acl_upload", "acl_toxresult_upload", "acl_read")
BOOL_KEYS = frozenset({
    "volatile", "mirror_no_project_list", "mirror_use_external_urls",
    "mirror_ignore_serial_header", "mirror_provides_core_metadata",
})
INHERITANCE_MODES = ("intersection", "union")
# devpi 7 spells the whitelist as inheritance rules (model/devpi_api.py). Accepted as
# input and stored as the devpi 6 keys above, so exports, replicas and the changelog
# keep devpi 6's shape.
PROJECT_RULE_KEY = "inheritance_rules"

Others = Mapping[str, Mapping[str, Any]]


def known_keys(index_type: str) -> frozenset[str]:
    return STAGE_KEYS if index_type == STAGE else MIRROR_KEYS


def defaults(index_type: str, owner: str) -> dict[str, Any]:
    if index_type == MIRROR:
        return {"type": MIRROR, "volatile": True}
    return {
        "type": STAGE, "volatile": True, "bases": [], "acl_upload": [owner],
        "acl_toxresult_upload": [ANONYMOUS], "mirror_whitelist": [],
        "mirror_whitelist_inheritance": "intersection",
    }


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no"):
        return False
    raise InvalidInput(f"Unknown boolean value '{value}'.")


def parse_list(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    raise InvalidInput(f"Unknown list value {value}.")


def parse_type(value: Any) -> str:
    index_type = TYPE_ALIASES.get(str(value))
    if index_type is None:
        raise InvalidInput(f"unknown index type '{value}'")
    return index_type


def _unexpected(keys: Mapping[str, Any], what: str = "indexconfig") -> InvalidInput:
    listed = ", ".join(f"{k}={v}" for k, v in sorted(keys.items()))
    return InvalidInput(f"{what} got unexpected keyword arguments: {listed}")


def _normalize_value(key: str, value: Any, errors: list[str]) -> Any:
    try:
        if key in BOOL_KEYS:
            return parse_bool(value)
        if key == AGE_KEY:
            return check_age(value)
        if key == BLOCKS_KEY:
            return check_blocks(value)
        if key == CONSTRAINTS_KEY:  # a text: one specifier a line (they contain commas)
            return check_constraints(value.splitlines() if isinstance(value, str)
                                     else parse_list(value))
        if key in LIST_KEYS:
            items = parse_list(value)
            if key == EXEMPT_KEY:
                return _unique([normalize_project(i) for i in items])
            if key == "bases":
                return [_base_spec(item) for item in items]
            if key == "mirror_whitelist":
                return _unique(["*" if i == "*" else normalize_project(i) for i in items])
            return _unique([normalize_principal(i) for i in items])
        if key == "mirror_whitelist_inheritance":
            mode = str(value).lower()
            if mode not in INHERITANCE_MODES:
                raise InvalidInput(
                    f"Unknown value '{value}' for mirror_whitelist_inheritance, "
                    "must be 'intersection' or 'union'.")
            return mode
        if key == "mirror_url":
            return check_mirror_url(value)
        if key == "mirror_cache_expiry":
            try:
                return int(value)
            except (TypeError, ValueError):
                raise InvalidInput("'mirror_cache_expiry' option must be an integer") from None
    except InvalidInput as e:
        errors.append(e.message)
        return None
    return value


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _base_spec(item: str) -> str:
    parts = item.strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        raise InvalidInput(f"invalid base index spec: '{item}'")
    return "/".join(parts)


def _check_bases(name: str, bases: list[str], others: Others, errors: list[str]) -> None:
    for base in bases:
        if base not in others:
            errors.append(f"base index '{base}' does not exist")
    if any(e.startswith("base index") for e in errors):
        return
    if _reaches(name, bases, others):
        errors.append(f"bases {','.join(bases)} would make {name} inherit from itself")


def _reaches(target: str, start: list[str], others: Others) -> bool:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        current = todo.pop()
        if current == target:
            return True
        if current in seen:
            continue
        seen.add(current)
        todo.extend(others.get(current, {}).get("bases", ()) or ())
    return False


def project_rules(config: Mapping[str, Any], project: str) -> list[str]:
    """devpi 7's per-project ``inheritance_rules``: allowed when whitelisted by name."""
    names = {n if n == "*" else normalize_project(n) for n in config.get("mirror_whitelist") or ()}
    return [ALLOW_ALL] if normalize_project(project) in names else []


def project_config(config: Mapping[str, Any], project: str) -> dict[str, Any]:
    """devpi 7's configuration of ``project`` in a stage: ``{}`` when nothing is set."""
    rules = project_rules(config, project) if config.get("type") == STAGE else []
    return {PROJECT_RULE_KEY: rules} if rules else {}


def _check_rules(key: str, value: Any, choices: list[list[str]]) -> list[str]:
    rules = parse_list(value)
    if rules not in choices:
        listed = " or ".join(repr(c) for c in choices)
        raise InvalidInput(f"Unknown value {rules!r} for {key}, must be {listed}.")
    return rules


def _from_devpi7(config: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    """``config`` with devpi 7's inheritance keys turned into the devpi 6 ones."""
    if RULE_KEY not in config and TRUST_KEY not in config:
        return config
    config = dict(config)
    whitelist = parse_list(config.get("mirror_whitelist") or [])
    try:
        if RULE_KEY in config:
            rules = _check_rules(RULE_KEY, config.pop(RULE_KEY), [[ALLOW_ALL], [BLOCK_REMOTE]])
            whitelist = [n for n in whitelist if n != "*"] + ["*"] * (rules == [ALLOW_ALL])
            config["mirror_whitelist"] = whitelist
        if TRUST_KEY in config:
            value = str(config.pop(TRUST_KEY)).lower()
            if value not in TRUST_MODES:
                raise InvalidInput(f"Unknown value '{value}' for {TRUST_KEY}, "
                                   "must be 'none' or 'type:not remote'.")
            config["mirror_whitelist_inheritance"] = TRUST_MODES[value]
    except InvalidInput as e:
        errors.append(e.message)
    return config


def patch_project_rules(config: Mapping[str, Any], project: str, body: Any) -> dict[str, Any]:
    """The stage config after a PATCH of ``project``'s devpi 7 config (``inheritance_rules``,
    the only key there is): ``allow all`` whitelists the project, no rules unlist it."""
    if config.get("type") != STAGE:
        raise InvalidInput("only stage indexes have a project configuration")
    current = {PROJECT_RULE_KEY: project_rules(config, project)}
    if isinstance(body, list):
        for key, op, value in (_split_item(item) for item in body):
            if key != PROJECT_RULE_KEY:
                raise _unexpected({key: value}, "projectconfig")
            rules = current[PROJECT_RULE_KEY]
            if op == "=":
                rules = parse_list(value)
            elif op == "+=":
                rules = rules + [value] * (value not in rules)
            elif value in rules:
                rules = [r for r in rules if r != value]
            else:
                raise InvalidInput(f"The '{key}' setting doesn't have value '{value}'")
            current[PROJECT_RULE_KEY] = rules
    elif isinstance(body, Mapping):
        if isinstance(body.get("result"), Mapping) and "type" in body:
            body = body["result"]
        unknown = {k: v for k, v in body.items() if k != PROJECT_RULE_KEY}
        if unknown:
            raise _unexpected(unknown, "projectconfig")
        current = {PROJECT_RULE_KEY: body.get(PROJECT_RULE_KEY) or []}
    else:
        raise InvalidInput("Bad request: expected a JSON object or list")
    rules = _check_rules(PROJECT_RULE_KEY, current[PROJECT_RULE_KEY], [[], [ALLOW_ALL]])
    name = normalize_project(project)
    whitelist = [n for n in parse_list(config.get("mirror_whitelist") or [])
                 if n == "*" or normalize_project(n) != name]
    return {**config, "mirror_whitelist": whitelist + [name] * bool(rules)}


def _validate(name: str, config: dict[str, Any], others: Others, tolerate_unknown: bool) -> dict[str, Any]:
    """Normalise every known key of ``config`` and check it; raises one joined InvalidInput."""
    index_type = config["type"]
    errors: list[str] = []
    if index_type == STAGE:
        config = _from_devpi7(config, errors)
    unknown = {k: v for k, v in config.items() if k not in known_keys(index_type)}
    if unknown and not tolerate_unknown:
        raise _unexpected(unknown)
    result: dict[str, Any] = {}
    for key, value in config.items():
        result[key] = value if key in unknown else _normalize_value(key, value, errors)
    if result.get(AGE_KEY, "") is None:  # set to nothing: no age
        del result[AGE_KEY]
    if index_type == STAGE and not errors:
        _check_bases(name, result.get("bases", []), others, errors)
    if errors:
        raise InvalidInput(", ".join(errors))
    return result


def new_config(name: str, body: Mapping[str, Any], others: Others) -> dict[str, Any]:
    """Config of a new index ``user/index`` from a PUT body (values may be strings);
    errors name the keys as the body spelled them."""
    try:
        return _new_config(name, body, others)
    except InvalidInput as e:
        raise as_sent(e, sent_names(body)) from None


def _new_config(name: str, body: Mapping[str, Any], others: Others) -> dict[str, Any]:
    user, index = name.split("/", 1)
    check_name("indexname", index)
    body = request_keys(body)  # devpi 7's remote_* keys under their stored names
    index_type = parse_type(body.get("type", STAGE))
    config = defaults(index_type, user)
    for key, value in body.items():
        if key == "type" or (index_type == MIRROR and key in MIRROR_DROPPED_KEYS):
            continue
        config[key] = value
    return _validate(name, config, others, tolerate_unknown=False)


def patch_config(name: str, current: Mapping[str, Any], body: Any, others: Others) -> dict[str, Any]:
    """Config after a PATCH: a JSON list of ``key=value``/``key+=v``/``key-=v`` items or a
    dict merge; errors name the keys as the body spelled them."""
    keys = [str(i).partition("=")[0].rstrip("+-") for i in body] if isinstance(body, list) \
        else list(body) if isinstance(body, Mapping) else []
    try:
        return _patch_config(name, current, body, others)
    except InvalidInput as e:
        raise as_sent(e, sent_names(keys)) from None


def _patch_config(name: str, current: Mapping[str, Any], body: Any, others: Others) -> dict[str, Any]:
    if isinstance(body, list):
        return _patch_list(name, current, body, others)
    if not isinstance(body, Mapping):
        raise InvalidInput("Bad request: expected a JSON object or list")
    if isinstance(body.get("result"), Mapping) and "type" in body and len(body) <= 3:
        body = body["result"]
    body = request_keys(body)
    config = _without_obsolete(current)
    for key, value in body.items():
        if key != "projects":
            _assign(current, config, key, value)
    return _validate(name, config, others, tolerate_unknown=False)


def _assign(current: Mapping[str, Any], config: dict[str, Any], key: str, value: Any) -> None:
    """A plain ``key=value`` of either PATCH form: the type may only be restated, keys
    that mirrors never had are dropped silently, anything else is set (validated later)."""
    if key == "type":
        if parse_type(value) != current["type"]:
            raise InvalidInput("the 'type' of an index can't be changed")
    elif not (current["type"] == MIRROR and key in MIRROR_DROPPED_KEYS):
        config[key] = value


def _split_item(item: Any) -> tuple[str, str, str]:
    if not isinstance(item, str) or "=" not in item:
        raise InvalidInput(f"Bad request: {item!r} is not key=value, key+=value or key-=value")
    key, _, value = item.partition("=")
    op = "="
    if key.endswith(("+", "-")):
        key, op = key[:-1], key[-1] + "="
    if not key:
        raise InvalidInput(f"Bad request: {item!r} names no key")
    return request_key(key), op, value


def _without_obsolete(current: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a stored config without keys devpi dropped long ago (model.md 3.4)."""
    return {k: v for k, v in current.items() if k != "pypi_whitelist"}


def _patch_list(name: str, current: Mapping[str, Any], items: list[Any], others: Others) -> dict[str, Any]:
    config = _without_obsolete(current)
    parsed = [_split_item(item) for item in items]
    owner = name.split("/", 1)[0]
    has_defaults = defaults(current["type"], owner)
    for key, op, value in parsed:
        if op == "=":
            _assign(current, config, key, value)
        elif op == "-=" and value == "":
            if key in has_defaults:
                raise InvalidInput("Default values can't be removed.")
            config.pop(key, None)
        else:
            if key == RULE_KEY and current["type"] == STAGE and key not in config:
                config[key] = inheritance_rules(config)
            if key in (EXEMPT_KEY, CONSTRAINTS_KEY):
                config.setdefault(key, [])
            if key not in config:
                raise InvalidInput(f"The '{key}' setting has no value to change with {op}")
            values = parse_list(config[key]) if key in LIST_KEYS else _as_list(key, config[key])
            item = _normalize_item(key, value)
            if op == "+=":
                if item not in values:
                    values.append(item)
            elif item in values:
                values.remove(item)
            else:
                raise InvalidInput(f"The '{key}' setting doesn't have value '{value}'")
            config[key] = values
    tolerate = all(op != "=" for _, op, _ in parsed)
    return _validate(name, config, others, tolerate_unknown=tolerate)


def _as_list(key: str, value: Any) -> list[Any]:
    if isinstance(value, list):
        return list(value)
    raise InvalidInput(f"The '{key}' setting is not a list")


def _normalize_item(key: str, value: str) -> str:
    if key == EXEMPT_KEY:
        return normalize_project(value)
    if key == CONSTRAINTS_KEY:
        return check_constraints([value])[0]
    if key == "mirror_whitelist":
        return "*" if value == "*" else normalize_project(value)
    if key == "bases":
        return _base_spec(value)
    if key in ACL_KEYS:
        return normalize_principal(value)
    return value


def resolution_order(start: str, configs: Callable[[str], IndexConfig | None]) -> list[str]:
    """Breadth-first over bases, stages first and mirrors last, each once (spec/model.md 6.1)."""
    first = configs(start)
    if first is None:
        return []
    order, mirrors, seen = [start], [], {start}
    queue = list(first.bases) if isinstance(first, StageConfig) else []
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        config = configs(name)
        if config is None:
            continue
        if config.is_mirror:
            mirrors.append(name)
        else:
            order.append(name)
            queue.extend(config.bases if isinstance(config, StageConfig) else ())
    return order + mirrors


def devpi6_spelling(config: Mapping[str, Any]) -> dict[str, Any]:
    """A devpi 7 index configuration (``local``/``remote`` types, ``remote_*`` keys,
    inheritance rules) in the devpi 6 spelling we store; InvalidInput for a rule we do
    not know. A devpi 6 configuration comes back as it is."""
    result = {(f"mirror_{k[len('remote_'):]}" if k.startswith("remote_") else k): v
              for k, v in config.items()}
    if "type" in result:
        result["type"] = TYPE_ALIASES.get(str(result["type"]), result["type"])
    errors: list[str] = []
    if result.get("type") == STAGE:
        result = _from_devpi7(result, errors)
    if errors:
        raise InvalidInput(", ".join(errors))
    return result
