"""Every server option, declared once: its name (on the command line and as key of the
``-c`` YAML file), the kind of its value, its default, its help, the commands that
offer it, the Config field it sets and whether ``--workers`` children receive it.

Everything else derives from ``OPTIONS``: the twistd and ``devpi-twisted`` option
parsers, the config file and environment variables (config.py), the server arguments
``gen-config`` writes into its service files (cli.py) and a worker's command line
(workers.py). Like config.py, this module imports nothing of ours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

DEFAULT_PORT = 3141
DEFAULT_MAX_BODY = 1024 * 1024 * 1024
DEFAULT_MAX_JSON_BODY = 10 * 1024 * 1024
DEFAULT_BLOB_CACHE = 4 * 1024 * 1024 * 1024

TRUE_WORDS = frozenset({"y", "yes", "t", "true", "on", "1"})
FALSE_WORDS = frozenset({"n", "no", "f", "false", "off", "0"})
ROLES = ("auto", "standalone", "primary", "master", "replica")

# The devpi-twisted commands offering an option besides ``twistd devpi`` and
# ``gen-config``, which offer every one. STATE: passwd and cleanup.
INIT, STATE, EXPORT, IMPORT = "init", "state", "export", "import"
ANY_STATE = frozenset({INIT, STATE, EXPORT, IMPORT})


class ConfigError(Exception):
    """A setting a user must fix; the message is one line naming it."""


@attrs.frozen
class StorageSpec:
    """``--storage NAME[:key=value,...]``."""

    name: str
    settings: Mapping[str, str] = attrs.field(factory=dict)

    def __str__(self) -> str:
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in self.settings.items())
                            if self.settings else "")


def parse_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"--{name}: {value!r} is not a yes/no value")


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


def _whole(minimum: int = 0, maximum: int | None = None) -> Callable[[str, Any], int]:
    def parse(name: str, value: Any) -> int:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ConfigError(f"--{name}: {value!r} is not a whole number") from None
        if number < minimum:
            raise ConfigError(f"--{name}: {number} is below the minimum of {minimum}")
        if maximum is not None and number > maximum:
            raise ConfigError(f"--{name}: {number} is not a TCP port")
        return number

    return parse


def _positive(name: str, value: Any) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigError(f"--{name}: {value!r} is not a number") from None
    if number <= 0:
        raise ConfigError(f"--{name}: must be more than 0")
    return number


def _comma_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    return tuple(filter(None, (p.strip() for p in str(value).split(","))))


def _skip_indexes(name: str, value: Any) -> tuple[str, ...]:
    items = _comma_list(value)
    if "all" in items and len(items) > 1:
        raise ConfigError(f"--{name}: 'all' cannot be mixed with others")
    for item in items:
        if item not in ("all", "mirror", "stage") and item.count("/") != 1:
            raise ConfigError(f"--{name}: {item!r} is not user/index, an index type or 'all'")
    return items


def _fds(name: str, value: Any) -> tuple[tuple[int, str], ...]:
    fds = []
    for item in filter(None, str(value).split(",")):
        fd, _, family = item.partition(":")
        if not fd.isdigit() or family not in ("INET", "INET6", "UNIX"):
            raise ConfigError(f"--{name}: {item!r} is not FD:INET, FD:INET6 or FD:UNIX")
        fds.append((int(fd), family))
    return tuple(fds)


def _role(name: str, value: Any) -> str:
    role = str(value).lower()
    if role not in ROLES:
        raise ConfigError(f"--{name}: {role!r} is not one of {', '.join(ROLES)}")
    return role


def _devpi_api(name: str, value: Any) -> int:
    text = str(value).strip()
    if text not in ("6", "7"):
        raise ConfigError(f"--{name}: {text!r} is not 6 or 7")
    return int(text)


def _primary(name: str, value: Any) -> str:
    url = check_url(name, str(value))
    if urlsplit(url).username:
        raise ConfigError(f"--{name} must not contain credentials")
    return url


def _path(name: str, value: Any) -> Path:
    return Path(str(value)).expanduser().absolute()


def _flag(name: str, value: Any) -> bool:
    return parse_bool(name, value or False)


def _dump_format(name: str, value: Any) -> int:
    if str(value).strip() not in ("6", "7"):
        raise ConfigError(f"--{name} must be 6 or 7 (devpi-server's major version), not {value!r}")
    return int(str(value).strip())


def _joined(value: tuple[str, ...]) -> str:
    return ",".join(value) or ","  # "," is an empty list, "" would be no list at all


@attrs.frozen(eq=False)  # a kind is itself: FILE is not PATH
class Kind:
    """How a raw value (a command-line string or a YAML value) becomes a Config value,
    and how that value is written on a command line again (None: leave the option out;
    a flag is given when its text is not None)."""

    parse: Callable[[str, Any], Any]
    format: Callable[[Any], str | None] = str
    flag: bool = False


TEXT = Kind(lambda name, value: str(value))
WHOLE = Kind(_whole())
NUMBER = Kind(_positive, repr)
PATH = Kind(_path)
FILE = Kind(_path)  # a file the server reads (gen-config checks the service user can)
URL = Kind(lambda name, value: check_url(name, str(value)))
FLAG = Kind(_flag, lambda on: "" if on else None, flag=True)
NO_FLAG = Kind(lambda name, value: not _flag(name, value), lambda on: None if on else "",
               flag=True)  # --no-X sets the field X to False
COMMA_LIST = Kind(lambda name, value: _comma_list(value), _joined)


def _at_least(minimum: int) -> Kind:
    return Kind(_whole(minimum))


@attrs.frozen
class Option:
    """One option. ``field``: the Config attribute it sets (None: build_config puts its
    value elsewhere). ``to_workers``: a ``--workers`` child gets it (``secret``: through
    the environment, not on its command line). ``commands``: the devpi-twisted commands
    offering it besides twistd devpi and gen-config. ``key``: its name in the -c file."""

    name: str
    help: str
    kind: Kind = TEXT
    default: str | None = None
    to_workers: bool = False
    secret: bool = False
    commands: frozenset[str] = frozenset()
    short: str | None = None
    field: str | None = attrs.field()
    key: str = attrs.field()

    @field.default
    def _field(self) -> str:
        return self.name.replace("-", "_")

    @key.default
    def _key(self) -> str:
        return self.name

    @property
    def flag(self) -> bool:
        return self.kind.flag

    @property
    def variable(self) -> str:
        """The environment variable giving its value."""
        return "DEVPISERVER_" + self.name.upper().replace("-", "_")

    @property
    def help_text(self) -> str:
        return f"{self.help} [default: {self.default}]" if self.default else self.help

    def parse(self, raw: Any) -> Any:
        """The Config value of a raw value (None or "": the default); raises ConfigError."""
        if raw is None or raw == "":
            raw = self.default
        if raw is None and not self.flag:
            return None
        return self.kind.parse(self.name, raw)

    def text(self, value: Any) -> str | None:
        """The command-line text of a Config value (None: the option is left out)."""
        return None if value is None else self.kind.format(value)

    def argv(self, value: Any) -> list[str]:
        text = self.text(value)
        if text is None:
            return []
        return [f"--{self.name}"] if self.flag else [f"--{self.name}", text]


# In this order gen-config writes the options given to it into its service files.
OPTIONS: tuple[Option, ...] = (
    Option("serverdir", "state directory (env DEVPISERVER_SERVERDIR)", PATH, "~/.devpi/server",
        to_workers=True, commands=ANY_STATE),
    Option("storage", "storage backend and settings, NAME[:key=value,...]",
        Kind(lambda name, value: parse_storage(value)), "sqlite", to_workers=True, secret=True,
        commands=ANY_STATE),  # secret: the settings may hold a password
    Option("host", "address to listen on; '::' for all IPv6 and IPv4", TEXT, "localhost",
        to_workers=True),
    Option("port", "port to listen on; 0 picks a free one", Kind(_whole(0, 65535)),
        str(DEFAULT_PORT), to_workers=True),
    Option("unix-socket", "also serve on this unix socket path", to_workers=True),
    Option("unix-socket-perms", "permission bits of the unix socket (octal)", TEXT, "600",
        to_workers=True),
    Option("outside-url", "external base URL, when no X-Outside-Url header is sent", URL,
        to_workers=True),
    Option("secretfile", "file holding the server secret (signs login tokens)", FILE,
        to_workers=True, commands=frozenset({IMPORT})),
    Option("restrict-modify", "comma list of users/:groups allowed to manage users and indexes",
        COMMA_LIST, to_workers=True),
    Option("mirror-cache-expiry", "seconds a mirror project page stays fresh", WHOLE, "1800",
        to_workers=True),
    Option("request-timeout", "seconds to wait for upstream answers", NUMBER, "5", to_workers=True),
    Option("max-request-body-size", "largest accepted upload body in bytes", _at_least(1024),
        str(DEFAULT_MAX_BODY), to_workers=True),
    Option("max-json-body-size", "largest accepted body of any other request (JSON) in bytes",
        _at_least(1024), str(DEFAULT_MAX_JSON_BODY), to_workers=True),
    Option("blob-cache-size", "PostgreSQL storage: bytes of file bodies this host keeps copies "
                              "of in SERVERDIR/+blobcache to send them by sendfile; 0: none",
        WHOLE, str(DEFAULT_BLOB_CACHE), to_workers=True),
    Option("role", "standalone, primary or replica (auto: replica with --primary-url)",
        Kind(_role), "auto", to_workers=True, commands=frozenset({INIT})),
    Option("primary-url", "URL of the primary this replica follows", Kind(_primary),
        to_workers=True, commands=frozenset({INIT})),
    Option("master-url", "deprecated name of --primary-url", Kind(_primary), field=None,
        commands=frozenset({INIT})),  # its value lands in primary_url
    Option("replica-cert", "PEM file (certificate and key) a replica shows an https primary", FILE,
        to_workers=True),
    Option("file-replication-threads", "parallel file downloads on a replica", _at_least(1), "5",
        to_workers=True),
    Option("file-replication-skip-indexes",
        "comma list of user/index names, index types (mirror) or 'all' whose files a "
        "replica fetches only on demand", Kind(_skip_indexes, _joined), "", to_workers=True),
    Option("skip-serial", "a replica of a devpi-server primary leaves this serial of the "
        "primary out (one that cannot be translated), with a warning", Kind(_whole()),
        to_workers=False),
    Option("proxy-timeout", "seconds a replica waits for writes it relays to the primary", NUMBER,
        "30", to_workers=True),
    Option("logger-cfg", "JSON or YAML logging.config dictionary for stdlib logging", FILE,
        to_workers=True, commands=ANY_STATE),
    # devpi-server derives with 524288/16/8, about 11 s of start-up on two cores; the
    # secret is 32 random bytes, so a cheap derivation loses nothing. Pass devpi's
    # values to share login tokens with devpi-server nodes.
    Option("argon2-memory-cost", "KiB of memory for deriving keys from the secret", _at_least(8),
        "65536", to_workers=True),
    Option("argon2-time-cost", "iterations for deriving keys from the secret", _at_least(1), "3",
        to_workers=True),
    Option("argon2-parallelism", "lanes for deriving keys from the secret", _at_least(1), "4",
        to_workers=True),
    Option("ldap-config", "YAML file of an LDAP directory whose users may log in "
                          "(devpi-ldap's format)", FILE, to_workers=True),
    Option("offline-mode", "never contact upstream; serve only what is cached", FLAG,
        to_workers=True),
    Option("no-mirror-prefetch", "do not fetch the pages of a mirrored release's "
                                 "requirements before the client asks for them", NO_FLAG,
        field="mirror_prefetch", to_workers=True),
    # A worker is started with --requests-only and --listen-fds of its own; it never
    # starts workers, initialises, exports or imports.
    Option("requests-only", "worker process: serve HTTP only, no background work", FLAG),
    Option("workers", "also start N --requests-only worker processes on the same port(s)", WHOLE,
        "0"),
    Option("listen-fds", "(internal) serve on these inherited listening sockets: FD:FAMILY,...",
        Kind(_fds, lambda fds: ",".join(f"{fd}:{family}" for fd, family in fds)), ""),
    Option("debug", "log every request", FLAG, to_workers=True, commands=ANY_STATE),
    Option("init", "initialise the server directory first if it holds no state", FLAG),
    Option("no-root-pypi", "do not create the root/pypi mirror at init", NO_FLAG, field="root_pypi",
        commands=frozenset({INIT, IMPORT})),
    Option("root-passwd", "initial password of root (default: empty)", TEXT, "",
        commands=frozenset({INIT, IMPORT})),
    Option("root-passwd-hash", "initial argon2 hash of root's password",
        commands=frozenset({INIT, IMPORT})),
    Option("export", "export the state to this directory (devpi-server 6 dump format), then exit",
        PATH, field="export_dir"),
    Option("import", "import a dump directory into a new state, then exit", PATH,
        field="import_dir"),
    Option("hard-links", "export/import: hard-link files instead of copying them", FLAG,
        commands=frozenset({EXPORT, IMPORT})),
    Option("include-mirrored-files", "export: also dump files downloaded by mirror indexes", FLAG,
        commands=frozenset({EXPORT})),
    Option("format", "export: the dump format of this devpi-server major version (6 or 7)",
        Kind(_dump_format), "6", field="export_format", commands=frozenset({EXPORT})),
    Option("skip-import-type", "import: leave out indexes of these types (comma list)", COMMA_LIST,
        "", field="skip_import_types", commands=frozenset({IMPORT})),
    Option("access-log", "log every request in the combined log format (JSON lines with "
                         "twistd --logger devpi_twisted.logfmt.json_lines)", FLAG, to_workers=True),
    Option("devpi-api", "answer as devpi-server 6.20 (6) or 7 (7) does: index types and "
                        "keys, /+status role names, /+api features", Kind(_devpi_api), "6",
        to_workers=True),
    Option("audit-retention-days", "days the audit log keeps an event (the newest million "
                                   "are kept whatever their age)", _at_least(1), "90",
        to_workers=True),
)

OPTION: Mapping[str, Option] = {option.name: option for option in OPTIONS}


def offered_by(command: str) -> tuple[Option, ...]:
    """The options of a ``devpi-twisted`` command (INIT, STATE, EXPORT, IMPORT)."""
    return tuple(option for option in OPTIONS if command in option.commands)


def default_of(name: str) -> Any:
    """The Config value of an option not given anywhere."""
    return OPTION[name].parse(None)
