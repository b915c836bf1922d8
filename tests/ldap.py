"""A throwaway OpenLDAP ``slapd`` for the LDAP tests (Debian's ``slapd`` package).

``Slapd(work).start()`` writes a ``slapd.conf`` (schemas of /etc/ldap/schema, one mdb
database under ``work``), loads ``USERS`` and ``GROUPS`` with ``slapadd`` and runs
slapd in the foreground on two free loopback ports: ``ldap://`` (StartTLS offered) and
``ldaps://``, with a server certificate of a throwaway CA (``ca_file``). ``stop()`` and
``start()`` again take the directory down and bring it back on the same ports.
A missing slapd fails the test (scripts/run-tests installs it); it is never skipped.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SUFFIX = "dc=example,dc=com"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS_BASE = f"ou=groups,{SUFFIX}"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-secret"
USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw", "root": "ldap-root-pw",
         "localdup": "ldap-dup-pw"}
GROUPS = {"devs": ["alice", "bob"], "ops": ["alice"]}
STARTED: list[int] = []  # pids of the slapd processes started (tests/conftest.py asks)


def _binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}"):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError(f"{name} is missing: apt-get install slapd ldap-utils "
                       "(scripts/run-tests installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def people_ldif() -> str:
    entries = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\n"
               "dc: example\no: Example\n",
               f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
               f"dn: {GROUPS_BASE}\nobjectClass: organizationalUnit\nou: groups\n"]
    for user, password in USERS.items():
        entries.append(f"dn: uid={user},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {user}\n"
                       f"cn: {user}\nsn: {user}\nmail: {user}@example.com\n"
                       f"userPassword: {password}\n")
    for group, members in GROUPS.items():
        entries.append(f"dn: cn={group},{GROUPS_BASE}\nobjectClass: groupOfNames\ncn: {group}\n"
                       + "".join(f"member: uid={m},{PEOPLE}\n" for m in members))
    return "\n".join(entries)


def _certificates(work: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 and localhost it signed."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devpi-twisted test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = work / "ca.pem", work / "server.pem", work / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return ca_file, cert_file, key_file


class Slapd:
    """``suffix`` and ``ldif`` (its entries; default: ``USERS`` and ``GROUPS`` under
    SUFFIX) make another directory, e.g. one that the first refers to."""

    def __init__(self, work: Path, suffix: str = SUFFIX, ldif: str | None = None) -> None:
        self.work = work
        self.suffix = suffix
        self.ldif = people_ldif() if ldif is None else ldif
        self.port = free_port()
        self.tls_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.ca_file = work / "ca.pem"

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def _configure(self) -> Path:
        slapadd = _binary("slapadd")
        self.work.mkdir(parents=True, exist_ok=True)
        db = self.work / "db"
        db.mkdir()
        ca_file, cert_file, key_file = _certificates(self.work)
        conf = self.work / "slapd.conf"
        conf.write_text("\n".join([
            *(f"include /etc/ldap/schema/{s}.schema"
              for s in ("core", "cosine", "inetorgperson", "nis")),
            "modulepath /usr/lib/ldap", "moduleload back_mdb",
            f"pidfile {self.work}/slapd.pid", f"argsfile {self.work}/slapd.args",
            f"TLSCACertificateFile {ca_file}", f"TLSCertificateFile {cert_file}",
            f"TLSCertificateKeyFile {key_file}",
            "database mdb", "maxsize 16777216", f'suffix "{self.suffix}"',
            f'rootdn "cn=admin,{self.suffix}"', f"rootpw {ADMIN_PASSWORD}", f"directory {db}",
            "access to attrs=userPassword by anonymous auth by self read by * none",
            "access to * by * read", ""]))
        (self.work / "data.ldif").write_text(self.ldif)
        subprocess.run([slapadd, "-f", str(conf), "-l", str(self.work / "data.ldif")],
                       check=True, capture_output=True, timeout=60)
        return conf

    def start(self) -> Slapd:
        conf = self.work / "slapd.conf"
        if not conf.exists():
            conf = self._configure()
        urls = f"{self.url}/ ldaps://127.0.0.1:{self.tls_port}/"
        log = (self.work / "slapd.log").open("ab")
        self.process = subprocess.Popen([_binary("slapd"), "-f", str(conf), "-h", urls,
                                         "-d", "0"], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("slapd ended at start: "
                                   + (self.work / "slapd.log").read_text(errors="replace"))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                socket.create_connection(("127.0.0.1", self.tls_port), timeout=1).close()
                STARTED.append(self.process.pid)
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("slapd did not listen within 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
