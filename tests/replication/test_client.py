"""The replica's requests: its headers and token, and its TLS client certificate."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator

from devpi_twisted.model.tokens import REPLICA_TOKEN_MAX_AGE, TokenSigner
from devpi_twisted.replication.client import ClientCertificatePolicy, PrimaryClient
from devpi_twisted.serverdir import StartupError
from devpi_twisted.service import _replica_cert_policy


def test_every_request_carries_the_replica_headers_and_a_fresh_token() -> None:
    now = [1_700_000_000.0]
    signer = TokenSigner(b"r" * 16, lambda: now[0])
    client = PrimaryClient(None, None, "http://primary/", "b" * 32, signer,
                           outside_url="https://replica.example", primary_uuid="a" * 32)
    headers = client.headers(file=True, Accept="application/json")
    assert headers["X-Devpi-Replica-Uuid"] == ["b" * 32]
    assert headers["X-Devpi-Expected-Primary-Id"] == headers["X-Devpi-Expected-Master-Id"] == ["a" * 32]
    assert headers["X-Devpi-Replica-Outside-Url"] == ["https://replica.example"]
    assert headers["X-Devpi-Replica-Filerepl"] == ["YES"] and headers["Accept"] == ["application/json"]
    scheme, token = headers["Authorization"][0].split(" ")
    assert scheme == "Bearer" and signer.check(token, REPLICA_TOKEN_MAX_AGE) == "b" * 32
    assert client.url == "http://primary"


def _pem(tmp_path: Path) -> Path:
    """A self-signed certificate and its key in one PEM file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "replica")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(hours=1)).sign(key, hashes.SHA256()))
    path = tmp_path / "replica.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    return path


def test_replica_cert_makes_tls_connections_with_the_client_certificate(tmp_path: Path) -> None:
    policy = _replica_cert_policy(_pem(tmp_path))
    assert isinstance(policy, ClientCertificatePolicy)
    creator = policy.creatorForNetloc(b"primary.example", 443)
    assert IOpenSSLClientConnectionCreator.providedBy(creator)


def test_a_missing_or_bad_replica_cert_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="No such file"):
        _replica_cert_policy(tmp_path / "absent.pem")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(StartupError, match="not a PEM certificate"):
        _replica_cert_policy(bad)


def test_workers_of_a_primary_serve_the_feed_too(tmp_path: Path) -> None:
    from devpi_twisted.config import Config
    from devpi_twisted.service import worker_command

    (tmp_path / "secret").write_bytes(b"s" * 44)
    config = Config(serverdir=tmp_path, role="primary", secretfile=tmp_path / "secret", workers=2)
    args, _ = worker_command(config)
    assert args[args.index("--role") + 1] == "primary"
    assert "--role" not in worker_command(Config(serverdir=tmp_path, secretfile=tmp_path / "secret"))[0]


def test_a_replica_is_initialised_empty_and_refuses_local_password_changes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from devpi_twisted.cli import main

    serverdir = tmp_path / "replica"
    assert main(["init", "--serverdir", str(serverdir), "--role", "replica",
                 "--primary-url", "http://primary:3141/"]) == 0
    node = json.loads((serverdir / ".nodeinfo").read_text())
    assert node["role"] == "replica" and node["masterurl"] == "http://primary:3141"
    assert main(["passwd", "--serverdir", str(serverdir), "root"]) == 1
    assert "this is a replica" in capsys.readouterr().err


def test_roles_are_remembered_and_a_replica_stays_one(tmp_path: Path) -> None:
    from devpi_twisted import serverdir as sd
    from devpi_twisted.config import Config
    from devpi_twisted.service import _check_role

    standalone = sd.NodeInfo("a" * 32, "standalone")
    with pytest.raises(StartupError, match="cannot run as replica, was previously run as standalone"):
        _check_role(Config(serverdir=tmp_path, role="replica", primary_url="http://p"), standalone)
    replica = sd.NodeInfo("b" * 32, "replica", {"masterurl": "http://p"})
    with pytest.raises(StartupError, match="holds a replica's state"):
        _check_role(Config(serverdir=tmp_path, role="primary"), replica)
    promoted = _check_role(Config(serverdir=tmp_path, role="primary"), standalone)
    assert promoted.role == "primary" == sd.read_nodeinfo(tmp_path).role  # type: ignore[union-attr]
