"""What a server on sqlite does not import until it needs it (issue 25, memory:
each costs megabytes resident for good): PostgreSQL's driver, readme-renderer and what
it pulls in, Jinja2 for the web pages, Twisted's FTP module (for its FileConsumer),
logging.config (only with --logger-cfg), passlib and argon2-cffi (passwords are hashed
and checked in child processes, the secret's keys derived in one), pymacaroons and
PyNaCl (API tokens), email.policy, brotli and zstandard (pip asks for gzip), the
devpi-server changelog translators and the replica's follower and file replication
(a replica only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LAZY = ("psycopg2", "txpostgres", "readme_renderer", "docutils", "pygments", "comrak", "nh3",
        "jinja2", "twisted.protocols.ftp", "logging.config", "passlib", "argon2",
        "pymacaroons", "nacl", "email.policy", "brotli", "zstandard",
        "devpi_twisted.dump.devpi_changes", "devpi_twisted.replication.replica",
        "devpi_twisted.replication.follower", "devpi_twisted.replication.devpi_follow")


def test_the_service_module_imports_none_of_the_lazy_packages() -> None:
    done = subprocess.run([sys.executable, "-c", "import sys, json, devpi_twisted.service; "
                           "print(json.dumps(sorted({p for m in sys.modules for p in (m, m.split('.')[0])})))"],
                          capture_output=True, text=True, check=True, timeout=60)
    imported = set(json.loads(done.stdout))
    assert "twisted" in imported  # it did import the server
    assert imported.isdisjoint(LAZY), sorted(imported.intersection(LAZY))


def test_the_lazy_packages_still_load_where_they_are_used(tmp_path: Path) -> None:
    from devpi_twisted.model import apitokens
    from devpi_twisted.model.passwords import hash_password, verify_password
    from devpi_twisted.model.tokens import derive_keys
    from devpi_twisted.mirror.requirements import parse_requirements
    from devpi_twisted.web.encoding import compress, encode_all
    keys = derive_keys(b"secret", time_cost=1, memory_cost=8, parallelism=1)
    token_keys = apitokens.TokenKeys(keys.auth)
    presented = apitokens.parse(apitokens.mint(token_keys, "alice", "abcd2345", "salt",
                                               ["allowed=upload"]))
    assert presented is not None and presented.user == "alice"
    assert apitokens.checked(token_keys, presented, "salt").scope is not None
    assert verify_password("pw", hash_password("pw"))
    assert parse_requirements(b"Requires-Dist: Foo_Bar (>=1)\n\n") == ["foo-bar"]
    import brotli
    import zstandard
    assert brotli.decompress(compress(b"page" * 100, "br")) == b"page" * 100
    assert zstandard.ZstdDecompressor().decompress(compress(b"page" * 100, "zstd")) == b"page" * 100
    bodies = encode_all(["page"] * 100, tmp_path)  # the streaming compressors
    assert brotli.decompress(bodies["br"].data or b"") == b"page" * 100
    assert zstandard.ZstdDecompressor().decompressobj().decompress(bodies["zstd"].data or b"") \
        == b"page" * 100
    from devpi_twisted.dump.devpi_changes import translator_for
    assert callable(translator_for)
    from devpi_twisted.web.ui.describe import render_description
    from devpi_twisted.web.ui.templating import environment
    assert "<h3>" in render_description("Title\n=====\n\ntext\n", "text/x-rst")
    assert "<strong>b</strong>" in render_description("**b**", "text/markdown")
    assert environment() is environment()
    assert environment().get_template("error.html") is not None
