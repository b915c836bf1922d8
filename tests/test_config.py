"""Option parsing: devpi-server's names, precedence, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from devpi_twisted.config import (
    ConfigError, StorageSpec, listen_endpoints, parse_bool, parse_storage,
)
from devpi_twisted.service import Options


def config_of(args: list[str], environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    options = Options()
    options.environ = environ or {}
    options.parseOptions(args)
    return options.config()


def test_defaults_match_devpi_server() -> None:
    config = config_of([])
    assert config.serverdir == Path("~/.devpi/server").expanduser()
    assert config.listen == ("tcp:3141:interface=127.0.0.1",)
    assert config.storage == StorageSpec("sqlite")
    assert config.mirror_cache_expiry == 1800
    assert config.max_request_body_size == 1024 ** 3
    assert config.role == "standalone"
    assert config.restrict_modify is None


def test_command_line_beats_environment_beats_file(tmp_path: Path) -> None:
    file = tmp_path / "devpi.yml"
    file.write_text("devpi-server:\n  port: 1111\n  outside-url: https://file.example\n"
                    "  mirror-cache-expiry: 60\n")
    config = config_of(["-c", str(file), "--port", "2222"],
                       {"DEVPISERVER_PORT": "3333", "DEVPISERVER_OUTSIDE_URL": "https://env.example"})
    assert config.listen == ("tcp:2222:interface=127.0.0.1",)
    assert config.outside_url == "https://env.example"
    assert config.mirror_cache_expiry == 60


def test_serverdir_from_environment_and_deprecated_alias(tmp_path: Path) -> None:
    assert config_of([], {"DEVPISERVER_SERVERDIR": str(tmp_path / "a")}).serverdir == tmp_path / "a"
    assert config_of([], {"DEVPI_SERVERDIR": str(tmp_path / "b")}).serverdir == tmp_path / "b"


def test_flags_from_file_and_environment(tmp_path: Path) -> None:
    file = tmp_path / "devpi.yml"
    file.write_text("devpi-server:\n  offline-mode: yes\n")
    assert config_of(["-c", str(file)]).offline_mode is True
    assert config_of([], {"DEVPISERVER_OFFLINE_MODE": "0"}).offline_mode is False
    assert config_of(["--offline-mode"]).offline_mode is True
    assert config_of([]).mirror_prefetch is True
    assert config_of(["--no-mirror-prefetch"]).mirror_prefetch is False


DEVPI_SERVER_YML = """\
# as written for devpi-server 7 (strictyaml: every value a string)
devpi-server:
  serverdir: {serverdir}
  host: 0.0.0.0
  port: "4040"
  restrict-modify: root,:admins
  remote-refresh-delay: "600"
  offline-mode: "true"
  threads: "50"
  keyfs-cache-size: "10000"
  absolute-urls: "true"
  trusted-proxy-count: "1"
devpi-web:
  theme: dark
"""


def test_devpi_server_config_file_is_read_and_the_rest_named_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "devpi-server.yml"
    file.write_text(DEVPI_SERVER_YML.format(serverdir=tmp_path / "state"))
    for flag in ("-c", "--configfile", "--config"):  # --config: devpi's habit, a prefix
        config = config_of([flag, str(file)])
        assert config.serverdir == tmp_path / "state" and config.port == 4040
        assert config.host == "0.0.0.0" and config.offline_mode is True
        assert config.restrict_modify == ("root", ":admins")
        assert config.mirror_cache_expiry == 600  # devpi 7's name of it
        lines = capsys.readouterr().err.splitlines()
        assert lines == [f"devpi-twisted: warning: {file}: options not supported here, ignored: "
                         "absolute-urls, keyfs-cache-size, threads, trusted-proxy-count"]
    file.write_text("devpi-server:\n  port: 4041\n")
    assert config_of(["-c", str(file)]).port == 4041
    assert capsys.readouterr().err == ""
    file.write_text("devpi-server:\n  port: many\n")
    with pytest.raises(ConfigError, match="--port"):
        config_of(["-c", str(file)])


def test_restrict_modify_is_a_comma_list() -> None:
    assert config_of(["--restrict-modify", "root, :admins,"]).restrict_modify == ("root", ":admins")


def test_roles_follow_the_primary_url() -> None:
    assert config_of(["--role", "primary"]).role == "primary"
    assert config_of(["--role", "master"]).role == "primary"
    replica = config_of(["--master-url", "http://primary:3141/"])
    assert (replica.role, replica.primary_url) == ("replica", "http://primary:3141")
    assert replica.file_replication_threads == 5 and replica.proxy_timeout == 30.0
    assert config_of(["--file-replication-skip-indexes", "mirror, alice/dev"]) \
        .file_replication_skip_indexes == ("mirror", "alice/dev")


def test_master_url_is_an_alias_and_both_conflict() -> None:
    with pytest.raises(ConfigError, match="only --primary-url"):
        config_of(["--primary-url", "http://a/", "--master-url", "http://b/"])


@pytest.mark.parametrize(("args", "message"), [
    (["--role", "replica"], "needs --primary-url"),
    (["--primary-url", "http://primary:3141", "--workers", "2"], "not available on a replica"),
    (["--primary-url", "http://u:p@primary:3141"], "must not contain credentials"),
    (["--proxy-timeout", "0"], "more than 0"),
    (["--file-replication-skip-indexes", "all,mirror"], "cannot be mixed"),
    (["--file-replication-skip-indexes", "nouser"], "is not user/index"),
    (["--storage", "mysql"], "unknown backend 'mysql'"),
    (["--workers", "2", "--requests-only"], "--workers is for the main process"),
    (["--listen-fds", "3:IPX"], "is not FD:INET"),
    (["--storage", "sqlite:fsbackend=hash_hl"], "--storage sqlite takes no settings"),
    (["--argon2-memory-cost", "8", "--argon2-parallelism", "4"], "at least 8 times"),
    (["--max-request-body-size", "12"], "below the minimum"),
    (["--unix-socket", "/tmp/s", "--unix-socket-perms", "9z"], "is not octal"),
])
def test_unavailable_or_bad_options_are_refused(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_of(args)


def test_bad_yaml_file_is_one_line(tmp_path: Path) -> None:
    file = tmp_path / "broken.yml"
    file.write_text("devpi-server: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML") as e:
        config_of(["-c", str(file)])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(("host", "port", "endpoint"), [
    ("localhost", 3141, "tcp:3141:interface=127.0.0.1"),
    ("0.0.0.0", 80, "tcp:80:interface=0.0.0.0"),
    ("::", 3141, r"tcp6:3141:interface=\:\:"),
    ("[::1]", 8080, r"tcp6:8080:interface=\:\:1"),
    ("*", 3141, r"tcp6:3141:interface=\:\:"),
])
def test_listen_endpoints(host: str, port: int, endpoint: str) -> None:
    assert listen_endpoints(host, port) == (endpoint,)


def test_unix_socket_listens_too() -> None:
    config = config_of(["--unix-socket", "/run/devpi.sock", "--unix-socket-perms", "660"])
    assert config.listen[-1] == "unix:/run/devpi.sock:mode=660"


def test_postgresql_storage_accepts_devpi_postgresql_settings() -> None:
    config = config_of(["--storage", "pg8000:host=db,port=5433,database=devpi,user=u,password=p,"
                                     "ssl_check_hostname=false"])
    assert config.storage == StorageSpec("pg8000", {
        "host": "db", "port": "5433", "database": "devpi", "user": "u", "password": "p",
        "ssl_check_hostname": "false"})
    assert config_of(["--storage", "postgresql:host=db"]).storage.name == "postgresql"


def test_storage_specs() -> None:
    assert parse_storage("pg8000:host=db,port=5433") == StorageSpec("pg8000", {"host": "db", "port": "5433"})
    assert parse_storage({"name": "pg8000", "host": "db"}) == StorageSpec("pg8000", {"host": "db"})
    with pytest.raises(ConfigError, match="not key=value"):
        parse_storage("pg8000:host")


@pytest.mark.parametrize(("word", "value"), [("yes", True), ("On", True), ("0", False), ("f", False)])
def test_bool_words(word: str, value: bool) -> None:
    assert parse_bool("x", word) is value


def test_bool_nonsense_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a yes/no value"):
        parse_bool("offline-mode", "perhaps")


def test_only_the_main_process_of_a_primary_or_standalone_server_delivers_webhooks() -> None:
    from devpi_twisted.service import delivers_hooks

    assert delivers_hooks(config_of([]))
    assert delivers_hooks(config_of(["--role", "primary"]))
    assert not delivers_hooks(config_of(["--role", "primary", "--requests-only"]))
    assert not delivers_hooks(config_of(["--master-url", "http://primary:3141/"]))


def test_devpi_api_is_6_or_7() -> None:
    assert config_of([]).devpi_api == 6
    assert config_of(["--devpi-api", "7"]).devpi_api == 7
    assert config_of([], {"DEVPISERVER_DEVPI_API": "7"}).devpi_api == 7
    for bad in ("8", "six", "6.0"):
        with pytest.raises(ConfigError, match="--devpi-api"):
            config_of(["--devpi-api", bad])
