"""An editable install (``pip install -e .``, as contributors work) serves with
``twistd devpi`` too (issue 19, item 16).

setuptools' editable wheels map packages with an import hook unless the project maps
the root package dir; twisted finds plugins only in ``twisted/plugins`` directories on
``sys.path``, so behind the hook ``twistd`` would not know ``devpi``. The test makes a
virtualenv sharing this environment's installed packages (by symlinks, without
devpi-twisted and its plugin), installs the repository editable without dependencies,
and serves from it."""

from __future__ import annotations

import json
import subprocess
import sysconfig
import urllib.request
from pathlib import Path

from tests.support import Daemon, bare_venv

TOP = Path(__file__).resolve().parent.parent.parent
OURS = ("devpi_twisted", "__editable__", "devpi_plugin.py", "dropin.cache")


def share_packages(source: Path, target: Path) -> None:
    """``target`` mirrors ``source`` by symlinks, leaving out devpi-twisted (its
    packages, metadata and twisted plugin); twisted/ and twisted/plugins/ are real
    directories so the plugin can be left out of them."""
    target.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.name.startswith(OURS):
            continue
        if entry.is_dir() and entry.name in ("twisted", "plugins") and source.name in (
                "site-packages", "twisted"):
            share_packages(entry, target / entry.name)
        else:
            (target / entry.name).symlink_to(entry)


def editable_venv(work: Path) -> Path:
    venv, purelib = bare_venv(work)
    python = venv / "bin" / "python"
    shared = work / "shared"
    share_packages(Path(sysconfig.get_paths()["purelib"]), shared)
    (purelib / "shared-packages.pth").write_text(f"{shared}\n")
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                           "--editable", str(TOP)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    # twistd is Twisted's console script; Twisted itself comes from the shared packages
    twistd = venv / "bin" / "twistd"
    twistd.write_text(f"#!{python}\nimport sys\nfrom twisted.scripts.twistd import run\n"
                      "sys.exit(run())\n")
    twistd.chmod(0o755)
    return venv


class EditableDaemon(Daemon):
    def __init__(self, venv: Path, serverdir: Path) -> None:
        super().__init__(serverdir)
        self.venv = venv

    def command(self) -> list[str]:
        return [str(self.venv / "bin" / "twistd"), *super().command()[1:]]


def test_editable_install_serves_with_twistd_devpi(tmp_path: Path) -> None:
    venv = editable_venv(tmp_path)
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import devpi_twisted; print(devpi_twisted.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()
    assert Path(where).parent == TOP / "devpi_twisted"  # the editable copy, not an installed one
    assert not list((tmp_path / "shared").glob("devpi_twisted*"))
    assert not (tmp_path / "shared" / "twisted" / "plugins" / "devpi_plugin.py").exists()

    serverdir = tmp_path / "state"
    subprocess.run([str(venv / "bin" / "devpi-twisted"), "init", "--serverdir", str(serverdir),
                    "--no-root-pypi"], check=True, capture_output=True, timeout=120, cwd=tmp_path)
    daemon = EditableDaemon(venv, serverdir).start()
    try:
        request = urllib.request.Request(daemon.url + "/+api", headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            api = json.loads(response.read())["result"]
        assert api["login"].endswith("/+login")
    finally:
        daemon.stop()
