"""``devpi-twisted``: administration commands (init, passwd) sharing the server's options."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Sequence
from typing import Any

from twisted.python import usage

from devpi_twisted.config import (
    EXPORT_OPTIONS, IMPORT_OPTIONS, INIT_OPTIONS, STATE_OPTIONS, Config, ConfigError, make_options_class,
)
from devpi_twisted.serverdir import StartupError, read_nodeinfo

InitOptions = make_options_class(INIT_OPTIONS, "Create a new server state (like devpi-init).")


class PasswdOptions(make_options_class(STATE_OPTIONS, "Set a user's password.")):  # type: ignore[misc]
    def parseArgs(self, user: str | None = None) -> None:
        self["user"] = user


class _DumpOptions(usage.Options):
    """export/import take the dump directory as their one argument."""

    def parseArgs(self, directory: str) -> None:
        self["directory"] = directory

    def config(self) -> Config:
        import attrs

        from pathlib import Path

        key = "export_dir" if self.which == "export" else "import_dir"
        return attrs.evolve(super().config(), **{key: Path(self["directory"]).absolute()})  # type: ignore[misc]


class ExportOptions(_DumpOptions, make_options_class(  # type: ignore[misc]
        EXPORT_OPTIONS, "Export the state as a devpi-server 6 dump (dataindex.json plus files).")):
    which = "export"
    synopsis = "[options] DIR"


class ImportOptions(_DumpOptions, make_options_class(  # type: ignore[misc]
        IMPORT_OPTIONS, "Import a devpi-server 6 dump into a new server directory (and database).")):
    which = "import"
    synopsis = "[options] DIR"


class CommandOptions(usage.Options):
    synopsis = "devpi-twisted COMMAND [options]"
    subCommands = [
        ["init", None, InitOptions, "create a new server state"],
        ["passwd", None, PasswdOptions, "set a user's password"],
        ["export", None, ExportOptions, "write the state as a devpi-server 6 dump: export DIR"],
        ["import", None, ImportOptions, "load a devpi-server 6 dump into a new state: import DIR"],
    ]

    def opt_version(self) -> None:
        """Print the version and exit."""
        from devpi_twisted import __version__

        print(f"devpi-twisted {__version__}")
        raise SystemExit(0)

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("name a command: " + ", ".join(c[0] for c in self.subCommands))


def _init(config: Config, options: Any) -> None:
    from devpi_twisted.service import initialise

    initialise(config)


def _read_password(user: str) -> str:
    """Asks twice (three tries) on a terminal; reads two lines from a pipe."""
    if not sys.stdin.isatty():
        first, second = sys.stdin.readline().rstrip("\n"), sys.stdin.readline().rstrip("\n")
        if first != second:
            raise StartupError("the two passwords differ")
        return first
    for _ in range(3):
        first = getpass.getpass(f"New password for {user}: ")
        if first == getpass.getpass("Repeat new password: "):
            return first
        print("The passwords differ, try again.", file=sys.stderr)
    raise StartupError("the passwords differed three times")


def _passwd(config: Config, options: Any) -> None:
    from devpi_twisted.model.passwords import hash_password
    from devpi_twisted.serverdir import BOARD
    from devpi_twisted.service import open_storage
    from devpi_twisted.storage.board import SerialBoard

    node = read_nodeinfo(config.serverdir)
    if node is None:
        raise StartupError(f"{config.serverdir} contains no devpi-twisted state")
    if node.role == "replica":  # a local write would fork its history from the primary's
        raise StartupError("this is a replica: its users come from the primary; "
                           "change the password there")
    user = options["user"] or input("User name: ").strip()
    # publishing on the board lets a running server see the change on its next request
    storage = open_storage(config, board=SerialBoard(config.serverdir / BOARD))
    try:
        record = storage.get_user(user).result
        if record is None:
            raise StartupError(f"no user '{user}'")
        pwhash = hash_password(_read_password(user))
        storage.update_user(user, record.profile, pwhash, record.serial).result
    finally:
        storage.close()
    print(f"devpi-twisted: password of {user} changed")


def _dump(config: Config, options: Any) -> None:
    from devpi_twisted.dump.run import run
    from devpi_twisted.service import open_blobs, open_storage

    status = run(config, open_storage, open_blobs)
    if status:
        raise SystemExit(status)


COMMANDS = {"init": _init, "passwd": _passwd, "export": _dump, "import": _dump}


def main(argv: Sequence[str] | None = None) -> int:
    options = CommandOptions()
    try:
        options.parseOptions(list(sys.argv[1:] if argv is None else argv))
    except usage.UsageError as e:
        print(f"devpi-twisted: {e}\n(see devpi-twisted --help)", file=sys.stderr)
        return 2
    try:
        COMMANDS[options.subCommand](options.subOptions.config(), options.subOptions)
    except (ConfigError, StartupError) as e:
        print(f"devpi-twisted: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
