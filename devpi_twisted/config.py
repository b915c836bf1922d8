"""Options shared by ``twistd devpi`` and ``devpi-twisted``, turned into a frozen Config.

Values come from, highest first: the command line, ``DEVPISERVER_*`` environment
variables, the YAML file of ``-c/--configfile`` (top-level ``devpi-server:`` or
``devpi-twisted:`` mapping), built-in defaults (spec/ops.md section 1).

Parsing (``parseOptions``) only collects raw strings; ``Options.config()`` converts
and validates them and raises ``ConfigError`` with one line a user can act on, so
that ``twistd`` fails with that line instead of its whole usage text.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import socket
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
from twisted.python import usage

DEFAULT_SERVERDIR = "~/.devpi/server"
DEFAULT_PORT = 3141
DEFAULT_MAX_BODY = 1024 * 1024 * 1024
DEFAULT_MAX_JSON_BODY = 10 * 1024 * 1024
DEFAULT_BLOB_CACHE = 4 * 1024 * 1024 * 1024

TRUE_WORDS = frozenset({"y", "yes", "t", "true", "on", "1"})
FALSE_WORDS = frozenset({"n", "no", "f", "false", "off", "0"})

ROLES = ("auto", "standalone", "primary", "master", "replica")
# pg8000 is devpi-postgresql's name, kept so existing command lines work.
STORAGE_NAMES = ("sqlite", "pg8000", "postgresql")


class ConfigError(Exception):
    """A setting a user must fix; the message is one line naming it."""


@attrs.frozen
class OptionSpec:
    name: str
    help: str
    flag: bool = False
    default: str | None = None
    short: str | None = None


def _spec(name: str, help: str, default: str | None = None, short: str | None = None) -> OptionSpec:
    return OptionSpec(name=name, help=help, default=default, short=short)


def _flag(name: str, help: str) -> OptionSpec:
    return OptionSpec(name=name, help=help, flag=True)


SPECS: dict[str, OptionSpec] = {
    s.name: s
    for s in [
        _spec("serverdir", "state directory (env DEVPISERVER_SERVERDIR)", DEFAULT_SERVERDIR),
        _spec("storage", "storage backend and settings, NAME[:key=value,...]", "sqlite"),
        _spec("host", "address to listen on; '::' for all IPv6 and IPv4", "localhost"),
        _spec("port", "port to listen on; 0 picks a free one", str(DEFAULT_PORT)),
        _spec("unix-socket", "also serve on this unix socket path"),
        _spec("unix-socket-perms", "permission bits of the unix socket (octal)", "600"),
        _spec("outside-url", "external base URL, when no X-Outside-Url header is sent"),
        _spec("secretfile", "file holding the server secret (signs login tokens)"),
        _spec("restrict-modify", "comma list of users/:groups allowed to manage users and indexes"),
        _spec("mirror-cache-expiry", "seconds a mirror project page stays fresh", "1800"),
        _spec("request-timeout", "seconds to wait for upstream answers", "5"),
        _spec("max-request-body-size", "largest accepted upload body in bytes", str(DEFAULT_MAX_BODY)),
        _spec("max-json-body-size", "largest accepted body of any other request (JSON) in bytes",
              str(DEFAULT_MAX_JSON_BODY)),
        _spec("blob-cache-size", "PostgreSQL storage: bytes of file bodies this host keeps copies "
                                 "of in SERVERDIR/+blobcache to send them by sendfile; 0: none",
              str(DEFAULT_BLOB_CACHE)),
        _spec("role", "standalone, primary or replica (auto: replica with --primary-url)", "auto"),
        _spec("primary-url", "URL of the primary this replica follows"),
        _spec("master-url", "deprecated name of --primary-url"),
        _spec("replica-cert", "PEM file (certificate and key) a replica shows an https primary"),
        _spec("file-replication-threads", "parallel file downloads on a replica", "5"),
        _spec("file-replication-skip-indexes",
              "comma list of user/index names, index types (mirror) or 'all' whose files a "
              "replica fetches only on demand"),
        _spec("proxy-timeout", "seconds a replica waits for writes it relays to the primary", "30"),
        _spec("logger-cfg", "JSON or YAML logging.config dictionary for stdlib logging"),
        # devpi-server derives with 524288/16/8, about 11 s of start-up on two cores; the
        # secret is 32 random bytes, so a cheap derivation loses nothing. Pass devpi's
        # values to share login tokens with devpi-server nodes.
        _spec("argon2-memory-cost", "KiB of memory for deriving keys from the secret", "65536"),
        _spec("argon2-time-cost", "iterations for deriving keys from the secret", "3"),
        _spec("argon2-parallelism", "lanes for deriving keys from the secret", "4"),
        _spec("root-passwd", "initial password of root (default: empty)", ""),
        _spec("root-passwd-hash", "initial argon2 hash of root's password"),
        _flag("offline-mode", "never contact upstream; serve only what is cached"),
        _flag("no-mirror-prefetch", "do not fetch the pages of a mirrored release's "
                                    "requirements before the client asks for them"),
        _spec("workers", "also start N --requests-only worker processes on the same port(s)", "0"),
        _spec("listen-fds", "(internal) serve on these inherited listening sockets: FD:FAMILY,..."),
        _flag("requests-only", "worker process: serve HTTP only, no background work"),
        _flag("debug", "log every request"),
        _flag("access-log", "log every request in the combined log format (JSON lines with "
                            "twistd --logger devpi_twisted.logfmt.json_lines)"),
        _flag("init", "initialise the server directory first if it holds no state"),
        _flag("no-root-pypi", "do not create the root/pypi mirror at init"),
        _spec("export", "export the state to this directory (devpi-server 6 dump format), then exit"),
        _spec("import", "import a dump directory into a new state, then exit"),
        _flag("hard-links", "export/import: hard-link files instead of copying them"),
        _flag("include-mirrored-files", "export: also dump files downloaded by mirror indexes"),
        _spec("skip-import-type", "import: leave out indexes of these types (comma list)"),
    ]
}

SERVER_OPTIONS = (
    "serverdir", "storage", "host", "port", "unix-socket", "unix-socket-perms",
    "outside-url", "secretfile", "restrict-modify", "mirror-cache-expiry",
    "request-timeout", "max-request-body-size", "max-json-body-size", "blob-cache-size", "role", "primary-url", "master-url",
    "replica-cert", "file-replication-threads", "file-replication-skip-indexes", "proxy-timeout",
    "logger-cfg", "argon2-memory-cost", "argon2-time-cost", "argon2-parallelism",
    "offline-mode", "no-mirror-prefetch", "requests-only", "workers", "listen-fds", "debug", "init", "no-root-pypi",
    "root-passwd", "root-passwd-hash", "export", "import", "hard-links", "include-mirrored-files",
    "skip-import-type", "access-log",
)
INIT_OPTIONS = (
    "serverdir", "storage", "role", "primary-url", "master-url", "debug", "logger-cfg",
    "no-root-pypi", "root-passwd", "root-passwd-hash",
)
STATE_OPTIONS = ("serverdir", "storage", "debug", "logger-cfg")
EXPORT_OPTIONS = STATE_OPTIONS + ("hard-links", "include-mirrored-files")
IMPORT_OPTIONS = STATE_OPTIONS + (
    "secretfile", "hard-links", "no-root-pypi", "root-passwd", "root-passwd-hash", "skip-import-type")


@attrs.frozen
class StorageSpec:
    name: str
    settings: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Config:
    """Everything the code below the entry points sees of the options."""

    serverdir: Path
    storage: StorageSpec = StorageSpec("sqlite")
    host: str = "localhost"
    port: int = DEFAULT_PORT
    listen: tuple[str, ...] = ("tcp:3141:interface=127.0.0.1",)
    outside_url: str | None = None
    secretfile: Path | None = None
    restrict_modify: tuple[str, ...] | None = None
    mirror_cache_expiry: int = 1800
    request_timeout: float = 5.0
    max_request_body_size: int = DEFAULT_MAX_BODY
    max_json_body_size: int = DEFAULT_MAX_JSON_BODY
    blob_cache_size: int = DEFAULT_BLOB_CACHE
    role: str = "standalone"
    primary_url: str | None = None
    replica_cert: Path | None = None
    file_replication_threads: int = 5
    file_replication_skip_indexes: tuple[str, ...] = ()
    proxy_timeout: float = 30.0
    offline_mode: bool = False
    mirror_prefetch: bool = True
    requests_only: bool = False
    workers: int = 0
    listen_fds: tuple[tuple[int, str], ...] = ()
    debug: bool = False
    access_log: bool = False
    logger_cfg: Path | None = None
    argon2_memory_cost: int = 65536
    argon2_time_cost: int = 3
    argon2_parallelism: int = 4
    init: bool = False
    root_pypi: bool = True
    root_passwd: str = ""
    root_passwd_hash: str | None = None
    export_dir: Path | None = None
    import_dir: Path | None = None
    hard_links: bool = False
    include_mirrored_files: bool = False
    skip_import_types: tuple[str, ...] = ()


def parse_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"--{name}: {value!r} is not a yes/no value")


def _parse_int(name: str, value: str, minimum: int = 0) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"--{name}: {value!r} is not a whole number") from None
    if number < minimum:
        raise ConfigError(f"--{name}: {number} is below the minimum of {minimum}")
    return number


def _parse_float(name: str, value: str) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigError(f"--{name}: {value!r} is not a number") from None
    if number <= 0:
        raise ConfigError(f"--{name}: must be more than 0")
    return number


def parse_storage(value: object) -> StorageSpec:
    """``NAME[:k=v,...]`` or a YAML mapping ``{name: ..., k: v}``."""
    if isinstance(value, Mapping):
        settings = {str(k): str(v) for k, v in value.items() if k != "name"}
        name = str(value.get("name", ""))
    else:
        name, _, rest = str(value).partition(":")
        settings = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, sep, val = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--storage: setting {item!r} is not key=value")
            settings[key.strip()] = val.strip()
    name = name.strip()
    if not name:
        raise ConfigError("--storage: no backend name given")
    return StorageSpec(name, settings)


def check_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--{name}: {value!r} is not an http(s) URL")
    return value.rstrip("/")


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


def load_yaml_file(path: Path, option: str = "--configfile") -> Any:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"{option}: cannot read {path}: {e.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{option}: {path} is not valid YAML: {str(e).splitlines()[0]}") from None


def _config_file_values(path: str, known: Iterable[str]) -> dict[str, Any]:
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
    known = set(known)
    values = {}
    for key, value in section.items():
        key = str(key)
        if key in known:
            values[key] = value
        else:
            print(f"devpi-twisted: warning: unknown key {key!r} in {path} ignored", file=sys.stderr)
    return values


def _env_values(environ: Mapping[str, str], known: Iterable[str]) -> dict[str, str]:
    values = {}
    for name in known:
        value = environ.get("DEVPISERVER_" + name.upper().replace("-", "_"))
        if value:
            values[name] = value
    if "serverdir" in known and "serverdir" not in values and environ.get("DEVPI_SERVERDIR"):
        values["serverdir"] = environ["DEVPI_SERVERDIR"]
    return values


def _help(spec: OptionSpec) -> str:
    return f"{spec.help} [default: {spec.default}]" if spec.default else spec.help


def make_options_class(names: Iterable[str], doc: str = "",
                       base: type[BaseOptions] | None = None) -> type[usage.Options]:
    """A usage.Options subclass offering the named options, all defaulting to unset."""
    names = tuple(names)
    params = [[n, SPECS[n].short, None, _help(SPECS[n])] for n in names if not SPECS[n].flag]
    flags = [[n, SPECS[n].short, SPECS[n].help] for n in names if SPECS[n].flag]
    namespace = {
        "optParameters": params + [["configfile", "c", None, "YAML config file"]],
        "optFlags": flags,
        "_names": names,
        "__doc__": doc,
    }
    return type("Options", (base or BaseOptions,), namespace)


class BaseOptions(usage.Options):
    _names: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.environ: Mapping[str, str] = os.environ

    def opt_version(self) -> None:
        """Print the version and exit."""
        from devpi_twisted import __version__

        print(f"devpi-twisted {__version__}")
        raise SystemExit(0)

    def raw_values(self) -> dict[str, Any]:
        """Each option's value by precedence: command line, environment, file, default."""
        values: dict[str, Any] = {n: SPECS[n].default for n in self._names}
        configfile = self["configfile"] or self.environ.get("DEVPISERVER_CONFIGFILE")
        if configfile:
            values.update(_config_file_values(configfile, self._names))
        values.update(_env_values(self.environ, self._names))
        for name in self._names:
            given = self[name]
            if SPECS[name].flag:
                if given:
                    values[name] = True
            elif given is not None:
                values[name] = given
        return values

    def config(self) -> Config:
        """Convert and validate; raises ConfigError naming the bad option."""
        return build_config(self.raw_values())


class TwistdOptions(BaseOptions):
    """``twistd devpi``'s options. twistd answers a usage error by printing the whole
    help before the error; a mistyped option ends the process here instead, with one
    line naming it."""

    def parseOptions(self, options: Any = None) -> None:
        try:
            super().parseOptions(options)
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


def build_config(v: Mapping[str, Any]) -> Config:
    """Convert raw option values (strings, or YAML types) to a Config; missing ones take defaults."""

    def get(name: str) -> Any:
        value = v.get(name)
        return SPECS[name].default if value is None or value == "" else value

    def number(name: str, minimum: int = 0) -> int:
        return _parse_int(name, get(name), minimum)

    def flag(name: str) -> bool:
        return parse_bool(name, get(name) or False)

    def path(name: str) -> Path | None:
        value = get(name)
        return Path(os.path.expanduser(str(value))).absolute() if value else None

    primary_url = get("primary-url")
    if get("master-url"):
        if primary_url:
            raise ConfigError("--primary-url and --master-url given; use only --primary-url")
        primary_url = get("master-url")
    if primary_url:
        primary_url = check_url("primary-url", str(primary_url))
        if urlsplit(primary_url).username:
            raise ConfigError("--primary-url must not contain credentials")
    role = str(get("role")).lower()
    if role not in ROLES:
        raise ConfigError(f"--role: {role!r} is not one of {', '.join(ROLES)}")
    role = {"master": "primary", "auto": "replica" if primary_url else "standalone"}.get(role, role)
    if role == "replica" and not primary_url:
        raise ConfigError("--role replica needs --primary-url")

    host, port = str(get("host")), number("port")
    if port > 65535:
        raise ConfigError(f"--port: {port} is not a TCP port")
    listen = list(listen_endpoints(host, port))
    if get("unix-socket"):
        perms = str(get("unix-socket-perms"))
        try:
            mode = int(perms, 8)
        except ValueError:
            raise ConfigError(f"--unix-socket-perms: {perms!r} is not octal") from None
        socket_path = str(get("unix-socket")).replace(":", r"\:")
        listen.append(f"unix:{socket_path}:mode={mode:o}")

    restrict = get("restrict-modify")
    if isinstance(restrict, (list, tuple)):
        restrict = ",".join(map(str, restrict))
    outside_url = get("outside-url")
    serverdir = path("serverdir")
    assert serverdir is not None
    config = Config(
        serverdir=serverdir,
        storage=parse_storage(get("storage")),
        host=host,
        port=port,
        listen=tuple(listen),
        outside_url=check_url("outside-url", str(outside_url)) if outside_url else None,
        secretfile=path("secretfile"),
        restrict_modify=tuple(filter(None, (p.strip() for p in str(restrict).split(","))))
        if restrict else None,
        mirror_cache_expiry=number("mirror-cache-expiry"),
        request_timeout=_parse_float("request-timeout", get("request-timeout")),
        max_request_body_size=number("max-request-body-size", 1024),
        max_json_body_size=number("max-json-body-size", 1024),
        blob_cache_size=number("blob-cache-size"),
        role=role,
        primary_url=primary_url,
        replica_cert=path("replica-cert"),
        file_replication_threads=number("file-replication-threads", 1),
        file_replication_skip_indexes=_parse_skip(get("file-replication-skip-indexes")),
        proxy_timeout=_parse_float("proxy-timeout", get("proxy-timeout")),
        offline_mode=flag("offline-mode"),
        mirror_prefetch=not flag("no-mirror-prefetch"),
        requests_only=flag("requests-only"),
        workers=number("workers"),
        listen_fds=_parse_fds(get("listen-fds")),
        debug=flag("debug"),
        access_log=flag("access-log"),
        logger_cfg=path("logger-cfg"),
        argon2_memory_cost=number("argon2-memory-cost", 8),
        argon2_time_cost=number("argon2-time-cost", 1),
        argon2_parallelism=number("argon2-parallelism", 1),
        init=flag("init"),
        root_pypi=not flag("no-root-pypi"),
        root_passwd=str(get("root-passwd") or ""),
        root_passwd_hash=get("root-passwd-hash") or None,
        export_dir=path("export"),
        import_dir=path("import"),
        hard_links=flag("hard-links"),
        include_mirrored_files=flag("include-mirrored-files"),
        skip_import_types=tuple(
            filter(None, (t.strip() for t in str(get("skip-import-type") or "").split(",")))),
    )
    if config.export_dir is not None and config.import_dir is not None:
        raise ConfigError("--export and --import given; do one at a time")
    if config.argon2_memory_cost < 8 * config.argon2_parallelism:
        raise ConfigError("--argon2-memory-cost must be at least 8 times --argon2-parallelism")
    _refuse_unavailable(config)
    return config


def _parse_skip(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    items = tuple(filter(None, (p.strip() for p in str(value or "").split(","))))
    if "all" in items and len(items) > 1:
        raise ConfigError("--file-replication-skip-indexes: 'all' cannot be mixed with others")
    for item in items:
        if item not in ("all", "mirror", "stage") and item.count("/") != 1:
            raise ConfigError(f"--file-replication-skip-indexes: {item!r} is not user/index, "
                              "an index type or 'all'")
    return items


def _parse_fds(value: Any) -> tuple[tuple[int, str], ...]:
    fds = []
    for item in filter(None, str(value or "").split(",")):
        fd, _, family = item.partition(":")
        if not fd.isdigit() or family not in ("INET", "INET6", "UNIX"):
            raise ConfigError(f"--listen-fds: {item!r} is not FD:INET, FD:INET6 or FD:UNIX")
        fds.append((int(fd), family))
    return tuple(fds)


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
