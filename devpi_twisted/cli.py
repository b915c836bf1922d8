"""``devpi-twisted``: administration commands (init, passwd, export, import, gen-config,
cleanup), each offering the server options options.py declares for it."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import attrs
from twisted.python import usage

from devpi_twisted.config import BaseOptions, Config, usage_hint
from devpi_twisted.options import (
    EXPORT, FILE, IMPORT, INIT, OPTIONS, STATE, ConfigError, offered_by,
)
from devpi_twisted.serverdir import StartupError, explain_oserror, read_nodeinfo


class InitOptions(BaseOptions):
    """Create a new server state (like devpi-init)."""

    _options = offered_by(INIT)


class PasswdOptions(BaseOptions):
    """Set a user's password."""

    _options = offered_by(STATE)
    optFlags = [["allow-empty", None, "accept an empty password (refused otherwise)"]]

    def parseArgs(self, user: str | None = None) -> None:
        self["user"] = user


class _DumpOptions(BaseOptions):
    """export/import take the dump directory as their one argument."""

    which = ""
    synopsis = "[options] DIR"

    def parseArgs(self, directory: str) -> None:  # type: ignore[override]
        # usage.Options declares parseArgs without arguments; commands add theirs
        self["directory"] = directory

    def config(self) -> Config:
        directory = Path(self["directory"]).absolute()
        if self.which == "export":
            return attrs.evolve(super().config(), export_dir=directory)
        return attrs.evolve(super().config(), import_dir=directory)


class ExportOptions(_DumpOptions):
    """Export the state as a devpi-server 6 or 7 dump (dataindex.json plus files)."""

    _options = offered_by(EXPORT)
    which = "export"


class ImportOptions(_DumpOptions):
    """Import a devpi-server 6 or 7 dump into a new server directory (and database)."""

    _options = offered_by(IMPORT)
    which = "import"


class GenConfigOptions(BaseOptions):
    """Write nginx, systemd, cron and supervisor files into ./gen-config/."""

    _options = OPTIONS
    optParameters = [
        ["bindir", None, None, "directory holding twistd [default: the running Python's]"],
        ["service-user", None, None, "unix user the service runs as [default: the invoking "
                                     "user; for root the owner of the serverdir, or devpi]"],
        ["nginx-cache-dir", None, None, "where nginx-devpi-caching.conf keeps pages "
                                        "[default: /var/cache/nginx/devpi-PORT]"],
    ]


class CleanupOptions(BaseOptions):
    """Remove mirrored release files not downloaded lately (never uploads)."""

    _options = offered_by(STATE)
    optParameters = [
        ["days", None, None, "remove mirror files not downloaded for this many days"],
        ["max-size", None, None, "then keep at most this many bytes of mirror files "
                                 "(suffixes K, M, G, T), least recently downloaded go first"],
    ]
    optFlags = [["dry-run", "n", "only list what would be removed"]]


class PromoteOptions(BaseOptions):
    """Turn a stopped replica into a standalone server or a primary (every serial and
    file kept)."""

    _options = offered_by(STATE)
    optParameters = [["role", None, "standalone", "what the replica becomes: standalone or primary"]]
    optFlags = [["allow-missing-files", None, "promote even while some files have no body here"]]


class CommandOptions(usage.Options):
    synopsis = "devpi-twisted COMMAND [options]"
    subOptions: BaseOptions
    subCommands = [
        ["init", None, InitOptions, "create a new server state"],
        ["passwd", None, PasswdOptions, "set a user's password"],
        ["export", None, ExportOptions, "write the state as a devpi-server 6 (or 7) dump: export DIR"],
        ["import", None, ImportOptions, "load a devpi-server 6 or 7 dump into a new state: import DIR"],
        ["gen-config", None, GenConfigOptions, "write nginx, systemd, cron and supervisor files"],
        ["cleanup", None, CleanupOptions, "remove mirrored files not downloaded lately"],
        ["promote", None, PromoteOptions, "turn a stopped replica into a standalone server"],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # twisted's usage is unannotated

    def opt_version(self) -> None:
        """Print the version and exit."""
        from devpi_twisted import __version__

        print(f"devpi-twisted {__version__}")
        raise SystemExit(0)

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("name a command: " + ", ".join(COMMANDS))


def _init(config: Config, options: BaseOptions) -> None:
    from devpi_twisted.state import initialise

    initialise(config)


EMPTY_REFUSED = "an empty password is refused (give --allow-empty to set one); nothing changed"


def _read_password(user: str, allow_empty: bool) -> str:
    """Asks twice (three tries) on a terminal; from a pipe reads a line, and a second
    one that must repeat it if there is one. Empty or closed input sets nothing."""
    stdin = sys.stdin
    if stdin is None or stdin.closed or not stdin.isatty():
        first = stdin.readline() if stdin is not None and not stdin.closed else ""
        if not first:
            raise StartupError("no password on standard input (it is empty or closed); "
                               "nothing changed")
        second = stdin.readline()
        first, again = first.rstrip("\r\n"), second.rstrip("\r\n")
        if second and again != first:
            raise StartupError("the two passwords differ; nothing changed")
        if not first and not allow_empty:
            raise StartupError(EMPTY_REFUSED)
        return first
    for _ in range(3):
        try:
            first = getpass.getpass(f"New password for {user}: ")
            again = getpass.getpass("Repeat new password: ")
        except EOFError:
            raise StartupError("no password given; nothing changed") from None
        if first != again:
            print("The passwords differ, try again.", file=sys.stderr)
        elif not first and not allow_empty:
            print("An empty password is refused (see --allow-empty), try again.", file=sys.stderr)
        else:
            return first
    raise StartupError("no password set after three tries; nothing changed")


def _passwd(config: Config, options: BaseOptions) -> None:
    from devpi_twisted.model.passwords import hash_password
    from devpi_twisted.serverdir import BOARD
    from devpi_twisted.state import open_storage, run_blocking
    from devpi_twisted.storage.board import SerialBoard

    node = read_nodeinfo(config.serverdir)
    if node is None:
        raise StartupError(f"{config.serverdir} contains no devpi-twisted state")
    if node.role == "replica":  # a local write would fork its history from the primary's
        raise StartupError("this is a replica: its users come from the primary; "
                           "change the password there")
    try:
        user = options["user"] or input("User name: ").strip()
    except (EOFError, RuntimeError):  # closed input; RuntimeError: no sys.stdin at all
        user = ""
    if not user:
        raise StartupError("name the user: devpi-twisted passwd USER")
    # publishing on the board lets a running server see the change on its next request
    storage = open_storage(config, board=SerialBoard(config.serverdir / BOARD))

    async def change() -> None:  # storage without a reactor: each call completes at once
        try:
            record = await storage.get_user(user)
            if record is None:
                raise StartupError(f"no user '{user}'")
            pwhash = hash_password(_read_password(user, bool(options["allow-empty"])))
            await storage.update_user(user, record.profile, pwhash, record.serial)
        finally:
            await storage.close()

    run_blocking(change())
    print(f"devpi-twisted: password of {user} changed")


def _dump(config: Config, options: BaseOptions) -> None:
    from devpi_twisted.dump.run import run
    from devpi_twisted.state import open_blobs, open_storage

    status = run(config, open_storage, open_blobs)
    if status:
        raise SystemExit(status)


def _server_args(config: Config, options: BaseOptions) -> list[str]:
    """The server options given on the command line, in a fixed order, with the
    server directory and config file made absolute (as devpi-gen-config does)."""
    import os

    args = ["--serverdir", str(config.serverdir)]
    if options["configfile"]:
        args += ["--configfile", os.path.abspath(os.path.expanduser(options["configfile"]))]
    for option in OPTIONS:
        value = options[option.name]
        if option.name == "serverdir" or not value and value != "":
            continue
        args += [f"--{option.name}"] if option.flag else [f"--{option.name}", str(value)]
    return args


def _gen_config(config: Config, options: BaseOptions) -> None:
    import os

    from devpi_twisted import genconfig, serviceuser

    bindir = Path(options["bindir"] or Path(sys.executable).parent).absolute()
    user = options["service-user"] or serviceuser.default_service_user(config.serverdir)
    target = Path.cwd() / "gen-config"
    cache_dir = Path(options["nginx-cache-dir"]).absolute() if options["nginx-cache-dir"] else None
    files = genconfig.generate(config, _server_args(config, options), bindir, user, target,
                               cache_dir)
    notes = genconfig.usage_notes(target, user)
    for path in genconfig.write_files(target, files):
        print(f"devpi-twisted: wrote {path}: {notes[path.name]}")
    read = {f"--{option.name}": getattr(config, option.field)
            for option in OPTIONS if option.kind is FILE and option.field}
    if options["configfile"]:
        read["--configfile"] = Path(os.path.expanduser(options["configfile"])).absolute()
    for problem in serviceuser.access_problems(
            serviceuser.service_account(user), config.serverdir, bindir,
            {option: path for option, path in read.items() if path is not None},
            config.init):
        print(f"devpi-twisted: warning: {problem}", file=sys.stderr)


def _cleanup(config: Config, options: BaseOptions) -> None:
    """Runs beside a serving daemon: records change in transactions (the daemon sees
    them through the database and the serial board), bodies go after them."""
    import time

    from twisted.internet import task

    from devpi_twisted.model.cleanup import MirrorCleanup, parse_size
    from devpi_twisted.model.errors import DomainError
    from devpi_twisted.reactors import IServerReactor
    from devpi_twisted.serverdir import BOARD
    from devpi_twisted.state import open_blobs, open_storage
    from devpi_twisted.storage.board import SerialBoard

    if read_nodeinfo(config.serverdir) is None:
        raise StartupError(f"{config.serverdir} contains no devpi-twisted state")
    try:
        days = float(options["days"]) if options["days"] is not None else None
    except ValueError:
        raise ConfigError(f"--days: {options['days']!r} is not a number") from None
    try:
        budget = parse_size(options["max-size"]) if options["max-size"] is not None else None
    except DomainError as e:
        raise ConfigError(str(e)) from None

    async def run(reactor: IServerReactor) -> None:
        try:
            storage = open_storage(config, reactor, SerialBoard(config.serverdir / BOARD))
        except StartupError as e:
            print(f"devpi-twisted: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        try:
            blobs = open_blobs(config, storage, reactor)
            report = await MirrorCleanup(storage, blobs, time.time).run(
                days, budget, bool(options["dry-run"]))
        except DomainError as e:
            print(f"devpi-twisted: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        finally:
            await storage.close()
        verb = "would remove" if report.dry_run else "removed"
        for removed in report.removed:
            print(f"{verb} {removed.key} ({removed.size} bytes)")
        print(f"devpi-twisted: {verb} {len(report.removed)} mirror files "
              f"({report.removed_bytes} bytes), {report.kept} bytes of mirror files kept")

    from twisted.internet.defer import Deferred

    task.react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


def _promote(config: Config, options: BaseOptions) -> None:
    from devpi_twisted.promote import promote

    promote(config, str(options["role"]), bool(options["allow-missing-files"]))


COMMANDS = {"init": _init, "passwd": _passwd, "export": _dump, "import": _dump,
            "gen-config": _gen_config, "cleanup": _cleanup, "promote": _promote}


def main(argv: Sequence[str] | None = None) -> int:
    options = CommandOptions()
    try:
        options.parseOptions(  # type: ignore[no-untyped-call]  # twisted's usage is unannotated
            list(sys.argv[1:] if argv is None else argv))
    except usage.UsageError as e:
        where = cast(usage.Options, getattr(options, "subOptions", options))
        command = f"devpi-twisted {options.subCommand}" if options.subCommand else "devpi-twisted"
        print(f"devpi-twisted: {usage_hint(e, where)} (see {command} --help)", file=sys.stderr)
        return 2
    config = None
    try:
        config = options.subOptions.config()
        COMMANDS[str(options.subCommand)](config, options.subOptions)  # postOptions: one is named
    except (ConfigError, StartupError) as e:
        print(f"devpi-twisted: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a file the command cannot use: one line, never a traceback
        print("devpi-twisted: " + explain_oserror(config.serverdir if config else None, e),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
