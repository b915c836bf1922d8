"""--ldap-config files: devpi-ldap's keys read into settings; every mistake is a
StartupError naming the file and the key, at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from devpi_twisted.identity.ldapconfig import SCOPES, read_ldap_config
from devpi_twisted.serverdir import StartupError

GOOD = """\
devpi-ldap:
  url: ldaps://ldap.example.com
  tls:
    validate: 2
    ca_certs_file: {ca}
  referrals: false
  reject_as_unknown: false
  timeout: 3
  user_search:
    base: ou=people,dc=example,dc=com
    filter: (&(objectClass=person)(uid={{username}}))
    scope: single-level
    attribute_name: dn
    userdn: cn=reader,dc=example,dc=com
    password: reader-secret
  group_search:
    base: ou=groups,dc=example,dc=com
    filter: (&(objectClass=groupOfNames)(member={{userdn}}))
    attribute_name: cn
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ldap.yaml"
    path.write_text(text)
    return path


def test_devpi_ldaps_format_is_read(tmp_path: Path) -> None:
    ca = write(tmp_path, "x")
    ca = ca.rename(tmp_path / "ca.pem")
    settings = read_ldap_config(write(tmp_path, GOOD.format(ca=ca)))
    (server,) = settings.servers
    assert (server.host, server.port, server.ldaps) == ("ldap.example.com", 636, True)
    assert server.tls.ca_file == ca and server.tls.validate == 2
    assert settings.timeout == 3.0 and settings.referrals is False
    assert settings.user_search is not None and settings.user_search.scope == SCOPES["single-level"]
    assert settings.user_search.password == "reader-secret"
    assert "reader-secret" not in repr(settings)  # never in a log line
    assert settings.group_search is not None and settings.group_search.attribute_name == "cn"


def test_a_template_and_a_server_pool(tmp_path: Path) -> None:
    settings = read_ldap_config(write(tmp_path, """\
devpi-ldap:
  server_pool:
    - url: ldap://one.example.com:3389
    - url: ldap://two.example.com
  start_tls: true
  user_template: uid={username},ou=people,dc=example,dc=com
"""))
    assert [(s.host, s.port) for s in settings.servers] == [("one.example.com", 3389),
                                                              ("two.example.com", 389)]
    assert settings.start_tls and settings.timeout == 10.0 and settings.group_search is None


@pytest.mark.parametrize("body, message", [
    ("url: ldap://x\nuser_template: uid={username}\nuser_search: {}", "either 'user_template'"),
    ("url: ldap://x", "either 'user_template' or 'user_search'"),
    ("user_template: uid={username}", "either 'url' or 'server_pool'"),
    ("url: ldap://x\nserver_pool: [{url: ldap://y}]\nuser_template: uid={username}",
     "either 'url' or 'server_pool'"),
    ("server_pool: []\nuser_template: uid={username}", "'server_pool' must be a non-empty list"),
    ("server_pool: [{tls: {}}]\nuser_template: uid={username}", "needs a 'url'"),
    ("url: http://x\nuser_template: uid={username}", "not an ldap:// or ldaps:// URL"),
    ("url: ldap://x:99999\nuser_template: uid={username}", "bad port"),
    ("url: ldap://x/dc=a\nuser_template: uid={username}", "only the host and port"),
    ("url: ldap://x\nuser_template: uid=fixed", "must contain {username}"),
    ("url: ldap://x\nuser_template: uid={user}", "not {user}"),
    ("url: ldap://x\nuser_template: uid={username}\ntimeout: 0", "'timeout' must be"),
    ("url: ldap://x\nuser_template: uid={username}\ntimeout: soon", "'timeout' must be"),
    ("url: ldap://x\nuser_template: uid={username}\nreferrals: maybe", "'referrals' must be"),
    ("url: ldap://x\nuser_template: uid={username}\nsurprise: 1", "unknown key(s): surprise"),
    ("url: ldaps://x\nstart_tls: true\nuser_template: uid={username}", "ldaps:// URL is TLS"),
    ("url: ldap://x\nuser_template: uid={username}\ntls: {validate: 5}", "0, 1 or 2"),
    ("url: ldap://x\nuser_template: uid={username}\ntls: {version: 3}", "unknown tls key(s)"),
    ("url: ldap://x\nuser_template: uid={username}\ntls: {ca_certs_file: /nonexistent}",
     "not a readable file"),
    ("url: ldap://x\nuser_search: {base: b, filter: '(uid={username})'}",
     "'user_search' needs 'attribute_name'"),
    ("url: ldap://x\nuser_search: {base: b, filter: '(uid={username}', attribute_name: dn}",
     "not an LDAP filter"),
    ("url: ldap://x\nuser_search: {base: b, filter: '(uid={userdn})', attribute_name: dn}",
     "not {userdn}"),
    ("url: ldap://x\nuser_search: {base: b, filter: '(uid={username})', attribute_name: dn, "
     "scope: deep}", "'user_search: scope' must be one of"),
    ("url: ldap://x\nuser_search: {base: b, filter: '(uid={username})', attribute_name: dn, "
     "userdn: cn=r}", "without its 'password'"),
    ("url: ldap://x\nuser_template: uid={username}\ngroup_search: {base: b, filter: "
     "'(member={userdn})', attribute_name: cn, colour: red}", "unknown group_search key(s)"),
])
def test_bad_settings_name_the_key(tmp_path: Path, body: str, message: str) -> None:
    text = "devpi-ldap:\n" + "".join(f"  {line}\n" for line in body.splitlines())
    path = write(tmp_path, text)
    with pytest.raises(StartupError) as caught:
        read_ldap_config(path)
    assert str(caught.value).startswith(f"--ldap-config {path}: ")
    assert message in str(caught.value)


@pytest.mark.parametrize("text, message", [
    ("devpi-server: {}\n", "top-level 'devpi-ldap' key"),
    ("devpi-ldap: [1]\n", "top-level 'devpi-ldap' key"),
    ("devpi-ldap: {url: [\n", "not valid YAML"),
])
def test_a_file_that_is_not_an_ldap_config(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(StartupError, match=message):
        read_ldap_config(write(tmp_path, text))


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="cannot read it: No such file"):
        read_ldap_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("content, message", [
    (b"not a certificate\n", "holds no PEM certificate"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "ca_certs_file"),
])
def test_a_ca_file_without_a_certificate_stops_the_start(
        tmp_path: Path, content: bytes, message: str) -> None:
    from twisted.internet import reactor

    from devpi_twisted.identity.ldap import LdapDirectory

    ca = tmp_path / "ca.pem"
    ca.write_bytes(content)
    settings = read_ldap_config(write(tmp_path, f"devpi-ldap:\n  url: ldaps://x\n  tls:\n"
                                                f"    ca_certs_file: {ca}\n"
                                                "  user_template: uid={username}\n"))
    with pytest.raises(StartupError, match=message):
        LdapDirectory(settings, reactor)  # type: ignore[arg-type]
