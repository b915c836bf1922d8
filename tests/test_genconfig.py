"""``devpi-twisted gen-config``: the files it writes, checked by the tools that read
them (nginx -t, systemd-analyze verify), and the checked-in examples in nginx/ and
systemd/ that must be exactly what it writes."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
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


def gen_config(cwd: Path, *args: str) -> Path:
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([bin_path("devpi-twisted"), "gen-config", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
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
    checked = Nginx(tmp_path / "nginx", generated / "nginx-devpi.conf").check()
    assert checked.returncode == 0, checked.stderr
    caching = generated / "nginx-devpi-caching.conf"
    text = caching.read_text().replace("/var/cache/nginx/devpi-4040", str(tmp_path / "cache"))
    caching.write_text(text)
    checked = Nginx(tmp_path / "nginx-caching", caching).check()
    assert checked.returncode == 0, checked.stderr


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
