"""The frozen Config the code below the entry points sees, and how the options declared
in options.py become one: the usage.Options classes of ``twistd devpi`` and
``devpi-twisted``, the sources of values, their conversion and the rules between options.

Values come from, highest first: the command line, ``DEVPISERVER_*`` environment
variables, the YAML file of ``-c/--configfile`` (top-level ``devpi-server:`` or
``devpi-twisted:`` mapping), built-in defaults (spec/ops.md section 1).

Parsing (``parseOptions``) only collects raw strings; ``Options.config()`` converts
and validates them and raises ``ConfigError`` with one line a user can act on, so
that ``twistd`` fails with that line instead of its whole usage text. ``config_argv``
goes the other way: the command line giving a Config's values back.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import socket
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from twisted.python import usage

from devpi_twisted.options import OPTION, OPTIONS, Option, default_of
from devpi_twisted.options import ConfigError as ConfigError
from devpi_twisted.options import StorageSpec as StorageSpec
from devpi_twisted.options import parse_bool as parse_bool
from devpi_twisted.options import parse_storage as parse_storage

# pg8000 is devpi-postgresql's name, kept so existing command lines work.
STORAGE_NAMES = ("sqlite", "pg8000", "postgresql")
CONFIGFILE = "DEVPISERVER_CONFIGFILE"
SERVERDIR_ALIAS = "DEVPI_SERVERDIR"  # an older name of DEVPISERVER_SERVERDIR


def listen_endpoints(host: str, port: int) -> tuple[str, ...]:
    """Twisted endpoint strings for ``--host``/``--port`` (IPv4, IPv6, names)."""
    host = host.strip().strip("[]")
    if host in ("", "*"):
        host = "::"
    if host == "localhost":
        return (f"tcp:{port}:interface=127.0.0.1",)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            raise ConfigError(f"--host: cannot resolve {host!r}: {e}") from None
        address = ipaddress.ip_address(infos[0][4][0])
    if address.version == 6:
        return (f"tcp6:{port}:interface=" + str(address).replace(":", r"\:"),)
    return (f"tcp:{port}:interface={address}",)


@attrs.frozen
class Config:
    """Everything the code below the entry points sees of the options. Each field but
    ``listen`` is set by one option (options.py); the defaults are theirs."""

    serverdir: Path
    storage: StorageSpec = default_of("storage")
    host: str = default_of("host")
    port: int = default_of("port")
    listen: tuple[str, ...] = listen_endpoints(default_of("host"), default_of("port"))
    unix_socket: str | None = None
    unix_socket_perms: str = default_of("unix-socket-perms")
    outside_url: str | None = None
    secretfile: Path | None = None
    restrict_modify: tuple[str, ...] | None = None
    mirror_cache_expiry: int = default_of("mirror-cache-expiry")
    request_timeout: float = default_of("request-timeout")
    max_request_body_size: int = default_of("max-request-body-size")
    max_json_body_size: int = default_of("max-json-body-size")
    blob_cache_size: int = default_of("blob-cache-size")
    role: str = "standalone"  # "auto" resolved
    role_given: bool = False  # --role named (not auto): a replica's state does not decide it
    primary_url: str | None = None
    replica_cert: Path | None = None
    file_replication_threads: int = default_of("file-replication-threads")
    file_replication_skip_indexes: tuple[str, ...] = default_of("file-replication-skip-indexes")
    skip_serial: int | None = None
    proxy_timeout: float = default_of("proxy-timeout")
    ldap_config: Path | None = None
    offline_mode: bool = False
    mirror_prefetch: bool = True
    requests_only: bool = False
    workers: int = default_of("workers")
    listen_fds: tuple[tuple[int, str], ...] = default_of("listen-fds")
    debug: bool = False
    access_log: bool = False
    audit_retention_days: int = default_of("audit-retention-days")
    devpi_api: int = default_of("devpi-api")
    logger_cfg: Path | None = None
    argon2_memory_cost: int = default_of("argon2-memory-cost")
    argon2_time_cost: int = default_of("argon2-time-cost")
    argon2_parallelism: int = default_of("argon2-parallelism")
    # an --argon2-* option named: a replica of a devpi-server primary derives its key with
    # these, not with devpi's defaults (DEVPI_ARGON2)
    argon2_given: bool = False
    init: bool = False
    root_pypi: bool = True
    root_passwd: str = default_of("root-passwd")
    root_passwd_hash: str | None = None
    export_dir: Path | None = None
    import_dir: Path | None = None
    hard_links: bool = False
    include_mirrored_files: bool = False
    export_format: int = default_of("format")
    skip_import_types: tuple[str, ...] = default_of("skip-import-type")


NAMED = "+named"  # raw_values' key for the names of the options given, not defaulted
ARGON2_OPTIONS = ("argon2-memory-cost", "argon2-time-cost", "argon2-parallelism")
# devpi-server's own key derivation costs (memory KiB, passes, lanes): what a devpi
# primary started without --argon2-* options derives its keys with
DEVPI_ARGON2 = (524288, 16, 8)

# devpi-server's option names (its --configfile keys) that ours spell differently
DEVPI_RENAMED = {"remote-refresh-delay": "mirror-cache-expiry"}


def load_yaml_file(path: Path, option: str = "--configfile") -> Any:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"{option}: cannot read {path}: {e.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{option}: {path} is not valid YAML: {str(e).splitlines()[0]}") from None


def _config_file_values(path: str, options: Sequence[Option]) -> dict[str, Any]:
    data = load_yaml_file(Path(path).expanduser())
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping with a 'devpi-server' key")
    section = data.get("devpi-server", data.get("devpi-twisted"))
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"{path}: 'devpi-server' must be a mapping of option names")
    names = {option.key: option.name for option in options}
    values, unsupported = {}, []
    for key, value in section.items():
        key = str(key)
        name = names.get(DEVPI_RENAMED.get(key, key))
        if name is not None:
            values[name] = value
        else:
            unsupported.append(key)
    if unsupported:  # one line, however many: the operator reads it once at start-up
        print(f"devpi-twisted: warning: {path}: options not supported here, ignored: "
              f"{', '.join(sorted(unsupported))}", file=sys.stderr)
    return values


def _env_values(environ: Mapping[str, str], options: Sequence[Option]) -> dict[str, str]:
    values = {}
    for option in options:
        value = environ.get(option.variable)
        if value:
            values[option.name] = value
    serverdir = OPTION["serverdir"]
    if serverdir in options and "serverdir" not in values and environ.get(SERVERDIR_ALIAS):
        values["serverdir"] = environ[SERVERDIR_ALIAS]
    return values


def is_option_variable(name: str) -> bool:
    """Whether an environment variable gives an option's value (or the config file)."""
    return name == SERVERDIR_ALIAS or name == CONFIGFILE or any(
        name == option.variable for option in OPTIONS)


class BaseOptions(usage.Options):
    """The usage.Options of a command offering ``_options`` (set by each subclass), all
    unset unless given; ``config()`` makes the Config of what was given."""

    _options: tuple[Option, ...] = ()
    optParameters: list[list[Any]] = [["configfile", "c", None, "YAML config file"]]
    optFlags: list[list[Any]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_options" in cls.__dict__:  # usage.Options collects these from every class
            options = cls.__dict__["_options"]
            own_parameters = cls.__dict__.get("optParameters", [])
            own_flags = cls.__dict__.get("optFlags", [])
            cls.optParameters = [[o.name, o.short, None, o.help_text]
                                 for o in options if not o.flag] + own_parameters
            cls.optFlags = [[o.name, o.short, o.help] for o in options if o.flag] + own_flags

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # twisted's usage is unannotated
        self.environ: Mapping[str, str] = os.environ

    def opt_version(self) -> None:
        """Print the version and exit."""
        from devpi_twisted import __version__

        print(f"devpi-twisted {__version__}")
        raise SystemExit(0)

    def raw_values(self) -> dict[str, Any]:
        """Each option's value by precedence: command line, environment, file, default."""
        values: dict[str, Any] = {o.name: o.default for o in self._options}
        named: dict[str, Any] = {}
        configfile = self["configfile"] or self.environ.get(CONFIGFILE)
        if configfile:
            named.update(_config_file_values(configfile, self._options))
        named.update(_env_values(self.environ, self._options))
        for option in self._options:
            given = self[option.name]
            if option.flag:
                if given:
                    named[option.name] = True
            elif given is not None:
                named[option.name] = given
        return {**values, **named, NAMED: frozenset(named)}

    def config(self) -> Config:
        """Convert and validate; raises ConfigError naming the bad option."""
        return build_config(self.raw_values())


class TwistdOptions(BaseOptions):
    """``twistd devpi``'s options. twistd answers a usage error by printing the whole
    help before the error; a mistyped option ends the process here instead, with one
    line naming it."""

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        try:
            super().parseOptions(options)  # type: ignore[no-untyped-call]  # unannotated
        except usage.UsageError as e:
            raise SystemExit(f"twistd devpi: {usage_hint(e, self)} "
                             "(see twistd devpi --help)") from None


def usage_hint(error: usage.UsageError, options: usage.Options) -> str:
    """The usage error, with the closest option name when an unknown one was given."""
    message = str(error)
    unknown = re.fullmatch(r"option -*([\w-]+) not recognized", message)
    if unknown:
        known = [name.rstrip("=") for name in getattr(options, "longOpt", [])]
        close = difflib.get_close_matches(unknown.group(1), known, n=1)
        if close:
            message += f"; did you mean --{close[0]}?"
    return message


def build_config(raw: Mapping[str, Any]) -> Config:
    """Convert raw option values (strings, or YAML types) to a Config; missing ones take
    their defaults. Raises ConfigError naming the first bad option."""
    values: dict[str, Any] = {
        option.field: option.parse(raw.get(option.name)) for option in OPTIONS if option.field}
    master_url = OPTION["master-url"].parse(raw.get("master-url"))
    if master_url:
        if values["primary_url"]:
            raise ConfigError("--primary-url and --master-url given; use only --primary-url")
        values["primary_url"] = master_url
    primary_url = values["primary_url"]
    role = values["role"]
    role = {"master": "primary", "auto": "replica" if primary_url else "standalone"}.get(role, role)
    if role == "replica" and not primary_url:
        raise ConfigError("--role replica needs --primary-url")
    values["role"], values["role_given"] = role, values["role"] != "auto"
    named = raw.get(NAMED)  # raw_values says which were named; a plain mapping names its own
    values["argon2_given"] = any(
        name in named if named is not None else raw.get(name) is not None
        for name in ARGON2_OPTIONS)
    values["listen"] = _listen(values["host"], values["port"], values["unix_socket"],
                               values["unix_socket_perms"])
    config = Config(**values)
    if config.export_dir is not None and config.import_dir is not None:
        raise ConfigError("--export and --import given; do one at a time")
    if config.argon2_memory_cost < 8 * config.argon2_parallelism:
        raise ConfigError("--argon2-memory-cost must be at least 8 times --argon2-parallelism")
    _refuse_unavailable(config)
    return config


def as_replica_of(config: Config, primary_url: str) -> Config:
    """``config`` of a replica of ``primary_url`` (a replica's state started without
    ``--role``), checked as if both had been given."""
    config = attrs.evolve(config, role="replica", primary_url=primary_url)
    _refuse_unavailable(config)
    return config


def _listen(host: str, port: int, unix_socket: str | None, perms: str) -> tuple[str, ...]:
    listen = list(listen_endpoints(host, port))
    if unix_socket:
        try:
            mode = int(perms, 8)
        except ValueError:
            raise ConfigError(f"--unix-socket-perms: {perms!r} is not octal") from None
        path = unix_socket.replace(":", r"\:")
        listen.append(f"unix:{path}:mode={mode:o}")
    return tuple(listen)


def config_argv(config: Config, options: Iterable[Option]) -> list[str]:
    """The command line that gives ``options`` the values they have in ``config``, given
    to a process reading no other source of options. Values it would get without
    being told (defaults) are left out."""
    args: list[str] = []
    for option in options:
        if option.field and not _implied(config, option):
            args += option.argv(getattr(config, option.field))
    return args


def _implied(config: Config, option: Option) -> bool:
    if option.name == "role":  # the default, auto, depends on --primary-url
        return config.role == ("replica" if config.primary_url else "standalone")
    return bool(getattr(config, option.field or "") == option.parse(None))


def _refuse_unavailable(config: Config) -> None:
    """Options whose feature has not landed yet: refused loudly, never ignored."""
    if config.role == "replica" and config.workers:
        raise ConfigError("--workers is not available on a replica (one process follows the primary)")
    if config.storage.name not in STORAGE_NAMES:
        raise ConfigError(f"--storage: unknown backend {config.storage.name!r} "
                          f"(known: {', '.join(STORAGE_NAMES)})")
    if config.storage.name == "sqlite" and config.storage.settings:
        raise ConfigError(
            "--storage sqlite takes no settings, got: " + ", ".join(sorted(config.storage.settings)))
    if config.workers and config.requests_only:
        raise ConfigError("--workers is for the main process, not for a --requests-only worker")
