"""Every option declared for workers reaches a ``--workers`` child unchanged, whether the
main process got it on its command line, from its ``-c`` file or from its environment
(issue 20, item 3): the child's command line and environment, made by worker_command,
parse back into the main process's Config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from devpi_twisted.config import Config, build_config
from devpi_twisted.options import OPTIONS
from devpi_twisted.service import Options
from devpi_twisted.workers import worker_command

STORAGE = "pg8000:host=db,port=5433,password=s3cret"


def samples(tmp_path: Path) -> dict[str, Any]:
    """A value other than the default for every option workers receive (True: a flag)."""
    (tmp_path / "secret").write_bytes(b"s" * 44)
    (tmp_path / "logging.yml").write_text("version: 1\n")
    return {
        "serverdir": str(tmp_path / "state"),
        "storage": STORAGE,
        "host": "::1",
        "port": "8080",
        "unix-socket": str(tmp_path / "devpi.sock"),
        "unix-socket-perms": "660",
        "outside-url": "https://pkgs.example.org/devpi",
        "secretfile": str(tmp_path / "secret"),
        "restrict-modify": "root,:admins",
        "mirror-cache-expiry": "60",
        "request-timeout": "2.5",
        "max-request-body-size": "2048",
        "max-json-body-size": "4096",
        "blob-cache-size": "12345",
        "role": "primary",
        "primary-url": "http://primary.example:3141",
        "replica-cert": str(tmp_path / "cert.pem"),
        "file-replication-threads": "2",
        "file-replication-skip-indexes": "mirror,alice/dev",
        "proxy-timeout": "7",
        "logger-cfg": str(tmp_path / "logging.yml"),
        "ldap-config": str(tmp_path / "ldap.yml"),
        "argon2-memory-cost": "64",
        "argon2-time-cost": "2",
        "argon2-parallelism": "2",
        "offline-mode": True,
        "no-mirror-prefetch": True,
        "debug": True,
        "access-log": True,
        "audit-retention-days": "30",
        "devpi-api": "7",
    }


def command_line(values: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for name, value in values.items():
        args += [f"--{name}"] if value is True else [f"--{name}", value]
    return args


def parse(args: list[str], environ: dict[str, str]) -> Config:
    options = Options()
    options.environ = environ
    options.parseOptions(args)
    return options.config()


def child_of(config: Config, environ: dict[str, str]) -> tuple[Config, list[str], dict[str, str]]:
    args, env = worker_command(config, environ)
    # what WorkerSupervisor adds for each worker
    return parse([*args, "--requests-only", "--listen-fds", "3:INET"], env), args, env


NOT_FOR_WORKERS = {option.field for option in OPTIONS if option.field and not option.to_workers}


def assert_same_but_worker_fields(main: Config, child: Config) -> None:
    for field in attrs.fields(Config):
        if field.name not in NOT_FOR_WORKERS:
            assert getattr(child, field.name) == getattr(main, field.name), field.name
    assert child.requests_only and child.listen_fds == ((3, "INET"),)
    assert (child.workers, child.init, child.export_dir, child.import_dir) == (0, False, None, None)


def test_every_worker_option_has_a_sample(tmp_path: Path) -> None:
    declared = {option.name for option in OPTIONS if option.to_workers}
    assert declared == set(samples(tmp_path))


def test_every_worker_option_differs_from_its_default_in_the_samples(tmp_path: Path) -> None:
    main = parse(command_line(samples(tmp_path)), {})
    default = Config(serverdir=Path("/nowhere"))
    for option in OPTIONS:
        if option.to_workers and option.field:
            assert getattr(main, option.field) != getattr(default, option.field), option.name


def test_command_line_options_reach_a_worker_unchanged(tmp_path: Path) -> None:
    main = parse([*command_line(samples(tmp_path)), "--workers", "2"], {})
    child, args, env = child_of(main, {})
    assert_same_but_worker_fields(main, child)
    assert "--no-mirror-prefetch" in args and "--blob-cache-size" in args
    assert "s3cret" not in " ".join(args) and env["DEVPISERVER_STORAGE"] == STORAGE


def test_config_file_options_reach_a_worker_unchanged(tmp_path: Path) -> None:
    values = samples(tmp_path)
    from_file = {**values, "port": 8080, "restrict-modify": ["root", ":admins"],
                 "storage": {"name": "pg8000", "host": "db", "port": 5433, "password": "s3cret"}}
    file = tmp_path / "devpi.yml"
    file.write_text(yaml.safe_dump({"devpi-server": from_file}))
    main = parse(["-c", str(file), "--workers", "2"], {})
    assert main == parse([*command_line(values), "--workers", "2"], {})
    child, args, _ = child_of(main, {"DEVPISERVER_CONFIGFILE": str(file)})
    assert_same_but_worker_fields(main, child)
    assert "--configfile" not in args


def test_environment_options_reach_a_worker_unchanged(tmp_path: Path) -> None:
    environ = {option.variable: "yes" if value is True else value
               for option in OPTIONS for name, value in samples(tmp_path).items()
               if option.name == name}
    environ["PATH"] = "/usr/bin"
    main = parse(["--workers", "2"], environ)
    child, _, env = child_of(main, environ)
    assert_same_but_worker_fields(main, child)
    assert env["PATH"] == "/usr/bin"


def test_a_worker_reads_no_option_the_main_process_did_not_use(tmp_path: Path) -> None:
    """The main process's -c flag beats DEVPISERVER_CONFIGFILE; its worker must not read
    the file named in the environment either."""
    other = tmp_path / "other.yml"
    other.write_text("devpi-server:\n  offline-mode: true\n  mirror-cache-expiry: 5\n")
    mine = tmp_path / "mine.yml"
    mine.write_text("devpi-server:\n  port: 4000\n")
    environ = {"DEVPISERVER_CONFIGFILE": str(other), "DEVPI_SERVERDIR": str(tmp_path / "x")}
    main = parse(["-c", str(mine), "--serverdir", str(tmp_path / "state"),
                  "--secretfile", str(samples(tmp_path)["secretfile"])], environ)
    assert not main.offline_mode
    child, _, env = child_of(main, environ)
    assert_same_but_worker_fields(main, child)
    assert "DEVPISERVER_CONFIGFILE" not in env and "DEVPI_SERVERDIR" not in env


@pytest.mark.parametrize("args", [
    [],  # a standalone server with every default
    ["--primary-url", "http://primary.example:3141"],  # role auto: replica
    ["--role", "standalone", "--primary-url", "http://primary.example:3141"],
    ["--restrict-modify", ","],  # an empty list, not no list
])
def test_implied_values_reach_a_worker_unchanged(tmp_path: Path, args: list[str]) -> None:
    secret = samples(tmp_path)["secretfile"]
    main = parse(["--serverdir", str(tmp_path), "--secretfile", secret, *args], {})
    child, _, _ = child_of(main, {})
    assert_same_but_worker_fields(main, child)


def test_config_defaults_are_the_options_defaults(tmp_path: Path) -> None:
    assert Config(serverdir=tmp_path) == build_config({"serverdir": str(tmp_path)})
