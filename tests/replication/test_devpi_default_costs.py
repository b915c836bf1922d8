"""A devpi-server primary started with nothing but its secret file (devpi's own key
derivation costs), followed by our replica started the same way: the commands of
issue 24, with no ``--argon2-*`` option on either side. The replica learns that its
primary is devpi and signs its requests with the key devpi derives (service.py
``_devpi_signer``); a follow that gets past devpi's check proves the key is devpi's."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from tests.dump import devpi6
from tests.replication.devpi_primary import ROOT_PASSWORD, caught_up, replica_status
from tests.support import Daemon, init_serverdir


def test_a_replica_started_with_only_the_secret_follows_a_devpi_at_its_default_costs(
        tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(base64.b64encode(os.urandom(32)).decode())
    secret.chmod(0o600)
    server = devpi6.Devpi6(devpi6.ensure_installed(6), tmp_path / "primary")
    server.run("devpi-init", "--no-root-pypi", "--root-passwd", ROOT_PASSWORD)
    server.start("--secretfile", str(secret), "--role", "primary", "--offline-mode",
                 timeout=180, fast_argon2=False)
    try:
        root = devpi6.login(server.url, "root", ROOT_PASSWORD)
        status, reply = devpi6.call(server.url + "/carol", "PUT",
                                    {"password": "carol-pw", "email": "carol@example.com"},
                                    auth=root)
        assert status == 201, reply
        serverdir = tmp_path / "replica"
        init_serverdir(serverdir, "--role", "replica", "--primary-url", server.url)
        replica = Daemon(serverdir, "--secretfile", str(secret), fast_argon2=False).start()
        try:
            status_view = caught_up(replica, server.url, timeout=120)
            assert status_view["replica-primary-kind"].startswith("devpi-server 6.")
            assert not replica_status(replica).get("replication-errors")
            assert devpi6.call(replica.url + "/carol")[1]["result"]["email"] == "carol@example.com"
        finally:
            replica.stop()
    finally:
        server.stop()
