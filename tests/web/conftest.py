"""Route tests: the real Site and Klein app over sqlite, in memory (no sockets, no reactor).

Storage runs inline and argon2 runs inline, so every request completes before
the client call returns; time moves only through ``clock.advance``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import treq
from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent, _SynchronousProducer
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers

from devpi_twisted.doctext import doc_pages
from devpi_twisted.model.acl import Policy, parse_principals
from devpi_twisted.model.audit import AuditOps
from devpi_twisted.model.initial import root_pypi
from devpi_twisted.model.ops import ServerOps
from devpi_twisted.model.passwords import hash_password
from devpi_twisted.model.release_ops import ReleaseOps
from devpi_twisted.model.simple import SimpleOps
from devpi_twisted.model.tokens import TokenSigner
from devpi_twisted.storage.executor import InlineExecutor
from devpi_twisted.storage.interface import UserRecord
from devpi_twisted.storage.postgres import BlockingPostgresStorage
from devpi_twisted.storage.sqlite import SqliteStorage
from devpi_twisted.web.auditlog import AuditLog
from devpi_twisted.web.compose import build_site
from devpi_twisted.web.site import DevpiSite, ServerInfo
from tests.pg import PgCluster
from tests.support import result_of

UUID = "0123456789abcdef0123456789abcdef"
_HASHES: dict[str, str] = {}


def cached_hash(password: str) -> str:
    if password not in _HASHES:
        _HASHES[password] = hash_password(password)
    return _HASHES[password]


class SiteAgent(RequestTraversalAgent):
    """treq's in-memory agent, serving our own Site (with devpi's headers and limits)."""

    def __init__(self, site: DevpiSite) -> None:
        super().__init__(site.resource)
        self._serverFactory = site


@attrs.define
class Reply:
    code: int
    headers: Any
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


class Client:
    """Synchronous requests against the in-memory server."""

    def __init__(self, site: DevpiSite) -> None:
        self._agent = SiteAgent(site)
        self._http = HTTPClient(self._agent, data_to_body_producer=_SynchronousProducer)

    def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                headers: dict[str, Any] | None = None, auth: tuple[str, str] | None = None) -> Reply:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        hdrs = {"Accept": ["application/json"], **(headers or {})}
        response = result_of(self._http.request(
            method, "http://testserver" + path, data=data, headers=hdrs, auth=auth,
            allow_redirects=False))
        content = result_of(response.content())
        return Reply(response.code, response.headers, content)

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def raw(self, method: str, path: str, headers: dict[str, list[str]]) -> Reply:
        """A request without treq's additions (its Accept-Encoding: gzip, its decoding):
        the body as sent."""
        sent = self._agent.request(method.encode(), b"http://testserver" + path.encode(),
                                   Headers(headers))
        for _ in range(1000):  # a body from a pull producer (a FileSender) moves when pumped
            if sent.called:
                break
            self._agent.flush()
        response = result_of(sent)
        return Reply(response.code, response.headers, result_of(treq.content(response)))

    def forget_cookies(self) -> None:
        """Drop the cookies the server set (treq keeps them like a browser)."""
        self._http._cookiejar.clear()


@attrs.define
class Server:
    storage: Any
    clock: Clock
    client: Client
    ops: ServerOps
    audit_log: AuditLog

    def login(self, user: str, password: str) -> str:
        reply = self.client.request("POST", "/+login", {"user": user, "password": password})
        assert reply.code == 200, reply.body
        return str(reply.json["result"]["password"])

    def devpi_auth(self, user: str, secret: str) -> dict[str, Any]:
        import base64

        return {"X-Devpi-Auth": [base64.b64encode(f"{user}:{secret}".encode()).decode()]}


def make_server(tmp_path: Path, restrict_modify: str | None = None,
                outside_url: str | None = None, pg: tuple[PgCluster, str] | None = None,
                access_log: bool = False, hashing: Any = None, blobs: Any = None,
                devpi_api: int = 6) -> Server:
    """A server on sqlite, or with ``pg`` (cluster, database) on PostgreSQL through the
    blocking adapter: either way every request completes inside the client call (unless
    ``hashing``, the executor of password checks, holds them back)."""
    if pg is None:
        storage: Any = SqliteStorage.open(tmp_path / "db.sqlite3", InlineExecutor())
    else:
        storage = BlockingPostgresStorage(pg[0].settings(pg[1]))
    root = UserRecord("root", {"created": "2024-01-01T00:00:00Z"}, cached_hash(""), 0)
    result_of(storage.bootstrap([root], [root_pypi()]))
    clock = Clock()
    clock.advance(1_700_000_000)

    def offload(fn: Any, *args: Any) -> Any:
        if fn is hash_password:
            return succeed(cached_hash(*args))
        return succeed(fn(*args))

    policy = Policy(parse_principals(restrict_modify.split(",")) if restrict_modify else None)
    audit_log = AuditLog(storage, clock, 90, process="test:1")
    ops = ServerOps(storage, policy, TokenSigner(b"k" * 16, clock.seconds), offload, clock.seconds,
                    hashing=hashing, auditor=audit_log)
    info = ServerInfo(uuid=UUID, serverdir=str(tmp_path), outside_url=outside_url,
                      devpi_api=devpi_api)
    # The whole app; a blob store only for tests that upload (``blobs``).
    releases = ReleaseOps(storage, blobs, clock.seconds, audit_log,
                          doc_text=lambda path: succeed(doc_pages(path)))
    site = build_site(ops, info, releases,
                      SimpleOps(storage), blobs, offload, tmp_path, serial=lambda: storage.serial,
                      access_log=access_log, audit=AuditOps(storage, policy))
    return Server(storage, clock, Client(site), ops, audit_log)


def pg_of(request: pytest.FixtureRequest) -> tuple[PgCluster, str] | None:
    """For a fixture parametrized sqlite/postgres: None, or (cluster, a new database)."""
    if request.param != "postgres":
        return None
    cluster = request.getfixturevalue("pg_cluster")
    return cluster, cluster.create_database()


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    pg = pg_of(request)
    made = make_server(tmp_path, pg=pg)
    yield made
    made.storage.close()
