"""The daemon as an operator meets it: start-up, errors, restarts, crashes, limits."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support import FAST_ARGON2, Daemon, bin_path, call, init_serverdir, login


def twistd(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([bin_path("twistd"), "-n", "--pidfile=", "devpi", *FAST_ARGON2, *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


def changelog_serials(serverdir: Path) -> list[int]:
    conn = sqlite3.connect(str(serverdir / "db.sqlite3"))
    try:
        return [row[0] for row in conn.execute("SELECT serial FROM changelog ORDER BY serial")]
    finally:
        conn.close()


def test_restart_keeps_users_indexes_and_serial(fresh_serverdir: Path) -> None:
    daemon = Daemon(fresh_serverdir).start()
    try:
        assert call(daemon.url + "/alice", "PUT", {"password": "pw", "email": "a@x"})[0] == 201
        auth = login(daemon.url, "alice", "pw")
        assert call(daemon.url + "/alice/dev", "PUT", {"volatile": "False"}, auth)[0] == 200
        before = call(daemon.url + "/")[1]
        serial = call(daemon.url + "/+status")[1]["result"]["serial"]
    finally:
        daemon.stop()
    daemon.start()
    try:
        assert call(daemon.url + "/")[1] == before
        assert call(daemon.url + "/+status")[1]["result"]["serial"] == serial == 2
        # the secret made by init survives the restart: the old token still works
        status, reply, headers = call(daemon.url + "/alice", "PATCH", {"title": "t"}, auth)
        assert status == 200
        assert headers["X-Devpi-Serial"] == "3"
    finally:
        daemon.stop()
    assert changelog_serials(fresh_serverdir) == [0, 1, 2, 3]


def test_kill_9_during_index_edits_keeps_every_acknowledged_change(fresh_serverdir: Path) -> None:
    daemon = Daemon(fresh_serverdir).start()
    call(daemon.url + "/alice", "PUT", {"password": "pw"})
    auth = login(daemon.url, "alice", "pw")
    for n in range(4):
        call(daemon.url + f"/alice/ix{n}", "PUT", {}, auth)
    acked: dict[int, int] = {}
    stop = threading.Event()

    def edit(n: int) -> None:
        count = 0
        while not stop.is_set() and count < 10000:
            count += 1
            try:
                status, _, _ = call(daemon.url + f"/alice/ix{n}", "PATCH", [f"title={count}"], auth)
            except (OSError, http.client.HTTPException):
                return
            if status == 200:
                acked[n] = count

    threads = [threading.Thread(target=edit, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    daemon.kill9()
    stop.set()
    for t in threads:
        t.join(30)
    assert sum(acked.values()) > 20, acked
    daemon.start()
    try:
        for n, count in acked.items():
            title = int(call(daemon.url + f"/alice/ix{n}")[1]["result"]["title"])
            assert title in (count, count + 1)  # the last edit may have committed unanswered
        serials = changelog_serials(fresh_serverdir)
        assert serials == list(range(len(serials)))
        assert call(daemon.url + "/+status")[1]["result"]["serial"] == serials[-1]
    finally:
        daemon.stop()


def test_uninitialised_serverdir_says_how_to_initialise(tmp_path: Path) -> None:
    done = twistd("--serverdir", str(tmp_path / "empty"), "--port", "0")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"devpi-twisted: {tmp_path / 'empty'} contains no devpi-twisted state; create it with "
        f"'devpi-twisted init --serverdir {tmp_path / 'empty'}' (or start with --init)"]


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "http"], "--port: 'http' is not a whole number"),
    (["--port", "70000"], "--port: 70000 is not a TCP port"),
    (["--role", "replica"], "--role replica needs --primary-url"),
    (["--role", "boss"], "--role: 'boss' is not one of auto, standalone, primary, master, replica"),
    (["--outside-url", "ftp://x"], "--outside-url: 'ftp://x' is not an http(s) URL"),
    (["--storage", "mongo"], "--storage: unknown backend 'mongo' (known: sqlite, pg8000, postgresql)"),
    (["--mirror-cache-expiry", "soon"], "--mirror-cache-expiry: 'soon' is not a whole number"),
    (["--primary-url", "http://u:p@h/"], "--primary-url must not contain credentials"),
    (["--storage", "pg8000:host=127.0.0.1,port=1,connect=x"], "cannot open the database: unknown PostgreSQL setting(s): connect"),
])
def test_bad_option_values_fail_with_one_line(fresh_serverdir: Path, args: list[str], message: str) -> None:
    done = twistd("--serverdir", str(fresh_serverdir), "--port", "0", *args)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("devpi-twisted: " + message), done.stderr
    assert not (fresh_serverdir / ".listening").exists()


def test_an_error_found_after_the_storage_opened_ends_the_process(tmp_path: Path) -> None:
    """A bad --replica-cert is found once the storage (and its thread) is open: the
    process still exits with its one line instead of hanging on that thread."""
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate\n")
    done = twistd("--serverdir", str(tmp_path / "replica"), "--init", "--port", "0",
                  "--role", "replica", "--primary-url", "http://127.0.0.1:9/",
                  "--replica-cert", str(cert))
    assert done.returncode == 1
    assert f"devpi-twisted: --replica-cert {cert}: not a PEM certificate and key" in done.stderr


def test_port_in_use_fails_with_one_line(fresh_serverdir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = twistd("--serverdir", str(fresh_serverdir), "--host", "127.0.0.1", "--port", str(port))
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr + done.stdout


def test_second_server_on_one_serverdir_is_refused(fresh_serverdir: Path) -> None:
    daemon = Daemon(fresh_serverdir).start()
    try:
        done = twistd("--serverdir", str(fresh_serverdir), "--port", "0")
        assert done.returncode == 1
        assert "another devpi-twisted server is running" in done.stderr
    finally:
        daemon.stop()


def test_init_flag_initialises_on_first_start(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "new", "--init").start()
    try:
        users = call(daemon.url + "/")[1]["result"]
        assert users["root"]["indexes"]["pypi"]["type"] == "mirror"
        login(daemon.url, "root", "")
    finally:
        daemon.stop()
    daemon.start()  # a second start with --init keeps the state
    daemon.stop()


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    done = subprocess.run([bin_path("devpi-twisted"), "init", "--serverdir", str(tmp_path / "used")],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert "is not empty" in done.stderr
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == ["notes.txt"]


def test_init_warns_loudly_about_the_empty_root_password(tmp_path: Path) -> None:
    done = init_serverdir(tmp_path / "s")
    assert "EMPTY password" in done.stdout
    assert oct((tmp_path / "s" / ".secret").stat().st_mode & 0o777) == "0o600"
    quiet = init_serverdir(tmp_path / "t", "--root-passwd", "s3cret-pass")
    assert "EMPTY" not in quiet.stdout


def test_passwd_command_works_beside_the_running_server(fresh_serverdir: Path) -> None:
    daemon = Daemon(fresh_serverdir).start()
    try:
        done = subprocess.run(
            [bin_path("devpi-twisted"), "passwd", "--serverdir", str(fresh_serverdir), "root"],
            input="new-root-pw\nnew-root-pw\n", capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 10
        while call(daemon.url + "/+login", "POST", {"user": "root", "password": "new-root-pw"})[0] != 200:
            assert time.monotonic() < deadline, "server never saw the new password"
            time.sleep(0.2)
        assert call(daemon.url + "/+login", "POST", {"user": "root", "password": ""})[0] == 401
    finally:
        daemon.stop()
    unknown = subprocess.run(
        [bin_path("devpi-twisted"), "passwd", "--serverdir", str(fresh_serverdir), "ghost"],
        input="x\nx\n", capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 1 and "no user 'ghost'" in unknown.stderr


def test_100_mb_json_body_is_refused_and_server_keeps_serving(fresh_serverdir: Path) -> None:
    daemon = Daemon(fresh_serverdir).start()
    try:
        parts = urlsplit(daemon.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        size = 100 * 1024 * 1024
        conn.putrequest("PUT", "/alice")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Accept", "application/json")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        chunk = b"x" * (1024 * 1024)
        try:
            for _ in range(100):
                conn.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = conn.getresponse()
        assert response.status == 413
        assert "larger than" in json.loads(response.read())["message"]
        conn.close()
        assert call(daemon.url + "/alice")[0] == 404
        assert call(daemon.url + "/+api")[0] == 200
    finally:
        daemon.stop()


def test_bad_input_gets_4xx_and_never_a_traceback(fresh_serverdir: Path) -> None:
    daemon = Daemon(fresh_serverdir).start()
    try:
        url = daemon.url
        root = login(url, "root", "")
        assert call(url + "/root/a", "PUT", {}, root)[0] == 200
        assert call(url + "/root/b", "PUT", {"bases": "root/a"}, root)[0] == 200
        cases = [
            (call(url + "/alice", "PUT", raw=b"{nope"), 400),
            (call(url + "/alice", "PUT", {"password": "x", "bogus": 1}), 400),
            (call(url + "/al%20ice", "PUT", {"password": "x"}), 400),
            (call(url + "/root/x%3Ay", "PUT", {}, root), 400),
            (call(url + "/root/a", "PATCH", ["bases=root/b"], root), 400),
            (call(url + "/root/dev", "PUT", {"bases": "ghost/idx"}, root), 400),
            (call(url + "/root/dev", "PUT", [1, 2], root), 400),
            (call(url + "/root/a", "PATCH", ["nonsense"], root), 400),
            (call(url + "/root/a", "PATCH", ["title+=x"], root), 400),
            (call(url + "/root/a", "PATCH", {"type": "mirror"}, root), 400),
            (call(url + "/+login", "POST", {"user": "root", "password": "bad"}), 401),
            (call(url + "/+login", "POST", raw=b"\x00\x01"), 400),
            (call(url + "/root", "PATCH", {"email": 5}, root), 400),
        ]
        for (status, reply, headers), expected in cases:
            assert status == expected, reply
            assert isinstance(reply["message"], str) and reply["message"]
            assert headers["Content-Type"] == "application/json"
        assert call(url + "/+status")[1]["result"]["serial"] == 2
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.log.read_text()


def test_config_file_and_environment_are_read(tmp_path: Path, fresh_serverdir: Path) -> None:
    config = tmp_path / "devpi.yml"
    config.write_text(f"devpi-server:\n  serverdir: {fresh_serverdir}\n  restrict-modify: root\n"
                      "  threads: '50'\n  keyfs-cache-size: '1000'\n")  # devpi-server's own
    daemon = Daemon(fresh_serverdir, "--config", str(config))
    daemon.start()
    try:
        assert call(daemon.url + "/alice", "PUT", {"password": "x"})[0] == 403
    finally:
        daemon.stop()
    warned = [line for line in daemon.log.read_text().splitlines() if "not supported" in line]
    assert warned == [f"devpi-twisted: warning: {config}: options not supported here, "
                      "ignored: keyfs-cache-size, threads"]
    env_daemon = Daemon(fresh_serverdir, env={"DEVPISERVER_OUTSIDE_URL": "https://pkgs.example.org"})
    env_daemon.start()
    try:
        assert call(env_daemon.url + "/+api")[1]["result"]["login"] == "https://pkgs.example.org/+login"
    finally:
        env_daemon.stop()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_listens_on_ipv6(fresh_serverdir: Path) -> None:
    daemon = Daemon(fresh_serverdir)
    daemon.command = lambda: [  # type: ignore[method-assign]
        bin_path("twistd"), "-n", "--pidfile=", "devpi", "--serverdir", str(fresh_serverdir),
        "--host", "::1", "--port", "0", *FAST_ARGON2]
    daemon.start()
    try:
        assert daemon.url.startswith("http://[::1]:")
        assert call(daemon.url + "/+api")[0] == 200
    finally:
        daemon.stop()


def test_secretfile_must_be_private(tmp_path: Path, fresh_serverdir: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("x" * 44)
    secret.chmod(0o644)
    done = twistd("--serverdir", str(fresh_serverdir), "--port", "0", "--secretfile", str(secret))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"devpi-twisted: secret file {secret} must be readable by its owner only (chmod 600)"]


def test_tokens_signed_with_a_secretfile_survive_restart(tmp_path: Path, fresh_serverdir: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(base64.b64encode(bytes(range(32))))
    secret.chmod(0o600)
    daemon = Daemon(fresh_serverdir, "--secretfile", str(secret)).start()
    try:
        root = login(daemon.url, "root", "")
    finally:
        daemon.stop()
    other = Daemon(fresh_serverdir).start()  # signs with the init secret: the token is foreign
    try:
        assert call(other.url + "/+api", auth=root)[1]["result"]["authstatus"][0] == "noauth"
    finally:
        other.stop()
    daemon.start()
    try:
        assert call(daemon.url + "/+api", auth=root)[1]["result"]["authstatus"][:2] == ["ok", "root"]
    finally:
        daemon.stop()


def test_debug_logs_requests_and_logger_cfg_feeds_stdlib_logging(tmp_path: Path,
                                                                 fresh_serverdir: Path) -> None:
    logfile = tmp_path / "stdlib.log"
    cfg = tmp_path / "logging.json"
    cfg.write_text(json.dumps({
        "version": 1,
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(logfile)}},
        "root": {"handlers": ["file"], "level": "INFO"},
    }))
    daemon = Daemon(fresh_serverdir, "--debug", "--logger-cfg", str(cfg)).start()
    try:
        call(daemon.url + "/+api?probe=1")
        call(daemon.url + "/+login", "POST", {"user": "root", "password": "do-not-log-me"})
    finally:
        daemon.stop()
    text = logfile.read_text()
    assert "serving on" in text
    assert '"GET /+api?probe=1 HTTP/1.1" 200 ' in text  # the combined log format
    assert "do-not-log-me" not in text + daemon.log.read_text()
