"""``devpi-twisted gen-config``: the files it writes, checked by the tools that read
them (nginx -t, systemd-analyze verify), and the checked-in examples in nginx/ and
systemd/ that must be exactly what it writes."""

from __future__ import annotations

import configparser
import os
import pwd
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nginx import Nginx
from tests.support import bin_path

TOP = Path(__file__).resolve().parent.parent
# The command that made the checked-in examples (README.rst says so too).
EXAMPLE_ARGS = ["--serverdir", "/srv/devpi", "--port", "3141", "--outside-url",
                "https://pypi.example.com", "--secretfile", "/etc/devpi/secret",
                "--bindir", "/opt/devpi/bin", "--service-user", "devpi"]
EXAMPLES = {"nginx-devpi.conf": TOP / "nginx" / "nginx-devpi.conf",
            "nginx-devpi-caching.conf": TOP / "nginx" / "nginx-devpi-caching.conf",
            "devpi.service": TOP / "systemd" / "devpi.service"}


def run_gen_config(cwd: Path, *args: str, env: dict[str, str] | None = None,
                   ) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([bin_path("devpi-twisted"), "gen-config", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env=None if env is None else dict(os.environ, **env))
    assert done.returncode == 0, done.stderr
    return done


def gen_config(cwd: Path, *args: str) -> Path:
    run_gen_config(cwd, *args)
    return cwd / "gen-config"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("genconfig")
    return gen_config(work, "--serverdir", "relative/state", "--port", "4040",
                      "--outside-url", "https://pypi.example.com:8443/devpi",
                      "--restrict-modify", "root,:admins", "--offline-mode", "--access-log")


def test_checked_in_examples_are_what_gen_config_writes(tmp_path: Path) -> None:
    out = gen_config(tmp_path, *EXAMPLE_ARGS)
    for name, checked_in in EXAMPLES.items():
        assert checked_in.read_text() == (out / name).read_text(), (
            f"{checked_in} drifted from gen-config; regenerate it with "
            f"devpi-twisted gen-config {shlex.join(EXAMPLE_ARGS)}")


def test_writes_every_file_with_the_server_arguments(generated: Path) -> None:
    assert sorted(p.name for p in generated.iterdir()) == [
        "crontab", "devpi.service", "nginx-devpi-caching.conf", "nginx-devpi.conf",
        "supervisor-devpi.conf",
        "supervisord.conf"]
    serverdir = generated.parent / "relative" / "state"  # made absolute
    expected = ["devpi", "--serverdir", str(serverdir), "--port", "4040", "--outside-url",
                "https://pypi.example.com:8443/devpi", "--restrict-modify", "root,:admins",
                "--offline-mode", "--access-log"]
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read_string((generated / "devpi.service").read_text())
    exec_start = shlex.split(unit["Service"]["ExecStart"])
    assert exec_start[:6] == [str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=",
                              "-l", "-", "devpi"]
    assert exec_start[5:] == expected
    assert unit["Service"]["Restart"] == "on-failure"
    assert unit["Service"]["User"] and unit["Service"]["User"] != "root"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    cron = [line for line in (generated / "crontab").read_text().splitlines()
            if line and not line.startswith("#")]
    assert len(cron) == 1 and cron[0].startswith("@reboot ")
    # an /etc/cron.d line: @reboot, the user, the command
    assert shlex.split(cron[0])[1] == unit["Service"]["User"]
    assert shlex.split(cron[0])[2] == exec_start[0]
    assert shlex.split(cron[0])[-len(expected):] == expected
    program = configparser.ConfigParser(interpolation=None)
    program.read_string((generated / "supervisor-devpi.conf").read_text())
    assert shlex.split(program["program:devpi-twisted"]["command"])[5:] == expected
    supervisord = configparser.ConfigParser(interpolation=None)
    supervisord.read_string((generated / "supervisord.conf").read_text())
    assert supervisord["include"]["files"] == str(generated / "supervisor-devpi.conf")


def test_nginx_site_proxies_to_the_daemon_and_serves_the_file_store(generated: Path) -> None:
    site = (generated / "nginx-devpi.conf").read_text()
    serverdir = generated.parent / "relative" / "state"
    assert "server 127.0.0.1:4040;" in site
    assert "listen 8443;" in site and "server_name pypi.example.com" in site
    assert "location /devpi/ {" in site
    assert "X-Outside-Url $devpi_4040_scheme://$http_host/devpi;" in site
    assert f"alias {serverdir}/+files/;" in site
    assert "client_max_body_size 1073741824;" in site


def test_nginx_accepts_the_generated_sites(generated: Path, tmp_path: Path) -> None:
    for name in ("nginx-devpi.conf", "nginx-devpi-caching.conf"):
        site = tmp_path / name  # the caches (pages, /+authcheck decisions) in tmp_path
        site.write_text((generated / name).read_text().replace(
            "/var/cache/nginx/devpi-4040", str(tmp_path / "cache")))
        checked = Nginx(tmp_path / f"nginx-{name}", site).check()
        assert checked.returncode == 0, checked.stderr


def test_what_nginx_sends_itself_asks_authcheck_first(generated: Path) -> None:
    """X-Accel-Redirect files and cached pages: auth_request to an internal location
    proxying /+authcheck with the original URI, its decisions kept a few seconds per
    URI and credentials; pages cached only for requests without credentials."""
    for name in ("nginx-devpi.conf", "nginx-devpi-caching.conf"):
        site = (generated / name).read_text()
        files = site.split("location /+devpi-files-4040/ {", 1)[1].split("}", 1)[0]
        assert "internal;" in files and "auth_request /+devpi-authcheck-4040;" in files
        check = site.split("location = /+devpi-authcheck-4040 {", 1)[1].split("}", 1)[0]
        assert "internal;" in check and "proxy_pass http://devpi_4040/+authcheck;" in check
        assert "proxy_set_header X-Original-Uri $request_uri;" in check
        assert "X-Outside-Url $devpi_4040_scheme://$http_host/devpi;" in check
        assert ('proxy_cache_key "$request_uri|$http_authorization|$http_x_devpi_auth|'
                '$http_cookie";') in check
        assert "proxy_cache_valid 200 401 403 5s;" in check
        assert "/var/cache/nginx/devpi-4040-authcheck " in site
    caching = (generated / "nginx-devpi-caching.conf").read_text()
    pages = caching.split("\\+simple/ {", 1)[1].split("}", 1)[0]
    assert "auth_request /+devpi-authcheck-4040;" in pages
    credentials = "$http_authorization$http_x_devpi_auth$cookie_devpi_session"
    assert f"proxy_cache_bypass {credentials};" in pages
    assert f"proxy_no_cache {credentials};" in pages


def test_systemd_accepts_the_unit(generated: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    unit = generated / "devpi.service"
    if analyze is None:  # no systemd here: the parse check of the test above stands
        parsed = configparser.ConfigParser(interpolation=None, strict=False)
        parsed.read_string(unit.read_text())
        assert {"Unit", "Service", "Install"} <= set(parsed.sections())
        return
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    problems = [line for line in done.stderr.splitlines() if "devpi.service" in line]
    assert done.returncode == 0 and not problems, done.stderr


def test_bad_server_options_are_refused(tmp_path: Path) -> None:
    done = subprocess.run([bin_path("devpi-twisted"), "gen-config", "--port", "nope"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "--port" in done.stderr
    assert not (tmp_path / "gen-config").exists()


# gen-config run as root (as the tests are) writes files for another user: what that
# user cannot reach is said, one warning line per problem (issue 19, item 15).

# gen-config's defaults for root, and chown: a developer not running as root skips these;
# CI (CI=true, run as root) always runs them, and fails them if it is not root.
needs_root = pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("CI") != "true",
                                reason="needs root (gen-config's root defaults; chown)")


def warnings_of(done: subprocess.CompletedProcess[str]) -> list[str]:
    lines = done.stderr.splitlines()
    assert all(line.startswith("devpi-twisted: warning: ") for line in lines), done.stderr
    return lines


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A directory every user may enter (pytest's tmp_path is below a 0700 directory),
    holding a bin directory with a twistd and a Python every user may run."""
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="devpi-genconfig-", dir="/tmp"))
    top.chmod(0o755)
    bindir = top / "bin"
    bindir.mkdir()
    (bindir / "twistd").write_text("#!/bin/sh\n")
    (bindir / "twistd").chmod(0o755)
    (bindir / "python").symlink_to("/bin/sh")
    yield top
    shutil.rmtree(top)


@needs_root
def test_root_defaults_warn_what_the_service_user_cannot_reach(reachable: Path) -> None:
    home = reachable / "home"  # like /root: only its owner may enter it
    home.mkdir(mode=0o700)
    done = run_gen_config(reachable / "work", env={"HOME": str(home)})
    serverdir = home / ".devpi" / "server"
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read_string((reachable / "work" / "gen-config" / "devpi.service").read_text())
    user = unit["Service"]["User"]
    assert user == "devpi"
    warnings = warnings_of(done)
    assert any(f"--serverdir {serverdir} is not reachable by user devpi ({home} is mode 0700, "
               "owner root)" in line for line in warnings), warnings
    try:
        pwd.getpwnam("devpi")
    except KeyError:
        assert any("user 'devpi' does not exist" in line for line in warnings), warnings
    assert len(warnings) == len(set(warnings))


@needs_root
def test_service_user_defaults_to_the_owner_of_the_serverdir(reachable: Path) -> None:
    serverdir = reachable / "state"
    serverdir.mkdir()
    (serverdir / "db.sqlite3").write_text("")
    nobody = pwd.getpwnam("nobody")
    os.chown(serverdir, nobody.pw_uid, nobody.pw_gid)
    os.chown(serverdir / "db.sqlite3", nobody.pw_uid, nobody.pw_gid)
    done = run_gen_config(reachable / "work", "--serverdir", str(serverdir),
                          "--bindir", str(reachable / "bin"))
    out = reachable / "work" / "gen-config"
    assert "User=nobody\n" in (out / "devpi.service").read_text()
    assert "user = nobody\n" in (out / "supervisor-devpi.conf").read_text()
    cron = (out / "crontab").read_text().splitlines()[-1]
    assert shlex.split(cron)[:3] == ["@reboot", "nobody", str(reachable / "bin" / "twistd")]
    assert warnings_of(done) == []
    # a file in it that nobody cannot write is one more line
    (serverdir / ".secret").write_text("x")
    os.chmod(serverdir / ".secret", 0o600)
    done = run_gen_config(reachable / "work", "--serverdir", str(serverdir),
                          "--bindir", str(reachable / "bin"))
    assert warnings_of(done) == [
        f"devpi-twisted: warning: --serverdir {serverdir} holds files user nobody cannot write "
        f"({serverdir / '.secret'} is mode 0600, owner root): chown -R nobody {serverdir}"]


@needs_root
def test_each_unreachable_thing_is_one_warning(reachable: Path, tmp_path: Path) -> None:
    serverdir = reachable / "root-owned"
    serverdir.mkdir(mode=0o700)
    secret = reachable / "secret"
    secret.write_text("x" * 40)
    secret.chmod(0o600)
    hidden_bin = tmp_path / "venv" / "bin"  # below pytest's 0700 directory
    hidden_bin.mkdir(parents=True)
    (hidden_bin / "twistd").write_text("#!/bin/sh\n")
    (hidden_bin / "twistd").chmod(0o755)
    done = run_gen_config(reachable / "work", "--serverdir", str(serverdir), "--secretfile",
                          str(secret), "--bindir", str(hidden_bin), "--service-user", "nobody")
    warnings = warnings_of(done)
    assert len(warnings) == 3, warnings
    assert f"--serverdir {serverdir} is not writable by user nobody" in warnings[0]
    assert f"chown -R nobody {serverdir}" in warnings[0]
    assert f"{hidden_bin / 'twistd'} cannot be run by user nobody" in warnings[1]
    assert f"--secretfile {secret} is not readable by user nobody" in warnings[2]


def test_says_what_to_do_with_each_file(tmp_path: Path) -> None:
    import re

    done = run_gen_config(tmp_path, "--serverdir", str(tmp_path / "state"),
                          "--service-user", "nobody")
    lines = done.stdout.splitlines()
    notes = dict(re.fullmatch(r"devpi-twisted: wrote (\S+): (.{20,})", line).groups()  # type: ignore[union-attr]
                 for line in lines)
    assert len(notes) == len(lines)
    assert sorted(notes) == sorted(str(p) for p in (tmp_path / "gen-config").iterdir())
    assert "/etc/cron.d/" in notes[str(tmp_path / "gen-config" / "crontab")]
    assert "/etc/systemd/system/" in notes[str(tmp_path / "gen-config" / "devpi.service")]
