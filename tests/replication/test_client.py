"""The replica's requests: its headers and token, and its TLS client certificate."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from treq.client import HTTPClient
from treq.testing import _SynchronousProducer
from twisted.application.internet import backoffPolicy
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from devpi_twisted.model.tokens import REPLICA_TOKEN_MAX_AGE, NotAToken, TokenSigner
from devpi_twisted.config import build_config
from devpi_twisted.replication.client import ClientCertificatePolicy, PrimaryClient
from devpi_twisted.replication.devpi_follow import Follower
from devpi_twisted.serverdir import StartupError
from devpi_twisted.service import Options, _replica_cert_policy
from tests.support import result_of
from tests.web.conftest import SiteAgent


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


class _DevpiApi(Resource):
    """A devpi-server's ``/+api`` as the follower sees it: its bare version in a header."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"X-Devpi-Server-Version", b"6.20.3")
        return b'{"result": {}, "type": "apiconfig"}'


def _follower(devpi_signer: Any) -> tuple[Follower, PrimaryClient]:
    http = HTTPClient(SiteAgent(Site(_DevpiApi())), data_to_body_producer=_SynchronousProducer)
    clock = Clock()
    client = PrimaryClient(http, clock, "http://primary", "b" * 32,
                           TokenSigner(b"ours-key-16bytes", clock.seconds))
    follower = Follower(clock, None, client, lambda url: None, lambda: None,
                        backoffPolicy(), translator_for=lambda major, storage: None,
                        devpi_signer=devpi_signer)
    return follower, client


def _token(client: PrimaryClient) -> str:
    return client.headers()["Authorization"][0].split(" ")[1]


def test_a_devpi_primary_gets_tokens_signed_with_the_key_derived_at_devpis_costs() -> None:
    """Started without --argon2-*, a replica of a devpi-server signs with the key devpi
    derives at its own costs (service._devpi_signer), once it knows who the primary is."""
    devpi_signer = TokenSigner(b"devpi-key-16byte", lambda: 1_700_000_000.0)
    asked: list[int] = []

    async def signer() -> TokenSigner:
        asked.append(1)
        return devpi_signer

    follower, client = _follower(signer)
    before = _token(client)
    with pytest.raises(NotAToken):
        devpi_signer.check(before, REPLICA_TOKEN_MAX_AGE)
    result_of(Deferred.fromCoroutine(follower._recognise()))
    assert follower.primary_kind == "devpi-server 6.20.3" and asked == [1]
    assert devpi_signer.check(_token(client), REPLICA_TOKEN_MAX_AGE) == "b" * 32


def test_named_argon2_costs_keep_the_replicas_own_key_for_a_devpi_primary() -> None:
    follower, client = _follower(None)
    result_of(Deferred.fromCoroutine(follower._recognise()))
    assert follower.primary_kind == "devpi-server 6.20.3"
    assert TokenSigner(b"ours-key-16bytes", lambda: 0).check(
        _token(client), REPLICA_TOKEN_MAX_AGE) == "b" * 32


@pytest.mark.parametrize(("argv", "given"), [
    ([], False),
    (["--argon2-time-cost", "3"], True),  # named, even at our default
    (["--argon2-memory-cost", "1024"], True),
])
def test_argon2_given_says_whether_an_argon2_option_was_named(
        tmp_path: Path, argv: list[str], given: bool) -> None:
    options = Options()
    options.parseOptions(["--serverdir", str(tmp_path), *argv])
    assert options.config().argon2_given is given


def test_argon2_given_counts_the_environment_and_plain_mappings(tmp_path: Path) -> None:
    options = Options()
    options.environ = {"DEVPISERVER_ARGON2_PARALLELISM": "2"}
    options.parseOptions(["--serverdir", str(tmp_path)])
    assert options.config().argon2_given
    assert not build_config({"serverdir": str(tmp_path)}).argon2_given
    assert build_config({"serverdir": str(tmp_path), "argon2-time-cost": "2"}).argon2_given
