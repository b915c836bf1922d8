"""``devpi-twisted gen-config``: deployment files made from the server's own options
(spec/ops.md 2.8): an nginx site, a systemd unit, a crontab line and a supervisor
program, written into ``./gen-config/``.

The nginx site proxies everything to the daemon and lets nginx send the bytes of
stored release files: it tells the daemon (header ``X-Devpi-Accel-Location``) the
internal location that maps to ``<serverdir>/+files``; the daemon checks the file
record as for any download and answers with ``X-Accel-Redirect`` into it. Files not
in the store yet (mirror files never downloaded, blobs kept in PostgreSQL) are sent
by the daemon itself, so the same site works for every storage.

What nginx sends itself (those files, and in the caching variant simple pages from
its cache) is protected by ``auth_request`` to the daemon's ``/+authcheck`` (the
read permission of the index the original URI names), through an internal location
that keeps each decision a few seconds, keyed by the URI and the credentials. Pages
are cached only for requests without credentials (anonymous pages show what every
reader may see), so a reader's page never reaches another client from the cache.

Pure text from a Config and the server arguments: no I/O but ``write_files``. What
the service user can reach is checked by serviceuser.py.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit


from devpi_twisted.config import Config

ACCEL_HEADER = "X-Devpi-Accel-Location"
DEFAULT_OUTSIDE_URL = "http://localhost:80"
CACHE_SECONDS = 1  # the caching variant keeps a simple page this long before revalidating
AUTH_CACHE_SECONDS = 5  # nginx keeps a decision of /+authcheck this long
# requests with any of these are never answered from (nor kept in) the page cache
_CREDENTIALS = "$http_authorization$http_x_devpi_auth$cookie_devpi_session"


def accel_location(config: Config) -> str:
    """The nginx-internal location serving ``<serverdir>/+files`` (one per daemon port)."""
    return f"/+devpi-files-{config.port}/"


def authcheck_location(config: Config) -> str:
    """The nginx-internal location asking the daemon's /+authcheck (one per daemon port)."""
    return f"/+devpi-authcheck-{config.port}"


def upstream_address(config: Config) -> str:
    """Where nginx reaches the daemon: its --host, with the wildcard and name
    addresses replaced by the loopback one."""
    host = config.host.strip("[]")
    if host in ("", "*", "localhost", "0.0.0.0", "::"):
        return f"127.0.0.1:{config.port}"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"{host}:{config.port}"
    return f"[{address}]:{config.port}" if address.version == 6 else f"{address}:{config.port}"


def _listen(outside: str) -> tuple[str, str, str]:
    """(listen argument, server name, mount path) of the outside URL."""
    parts = urlsplit(outside)
    host = parts.hostname or "localhost"
    port = parts.port or 80  # as devpi-gen-config: https without a port still listens on 80
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        listen = str(port)
    else:
        listen = f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
    return listen, host, parts.path.rstrip("/")


def _proxy(name: str, mount: str, accel: str, indent: str) -> str:
    lines = [
        f"proxy_pass http://{name};",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Host $http_host;",
        f"proxy_set_header X-Outside-Url ${name}_scheme://$http_host{mount};",
        f"proxy_set_header X-Forwarded-Proto ${name}_scheme;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "# the daemon answers downloads of stored files with X-Accel-Redirect to:",
        f"proxy_set_header {ACCEL_HEADER} {accel};",
    ]
    return "".join(f"{indent}{line}\n" for line in lines)


_PAGE_AUTH = """\
            # who may read the index: the daemon decides, also for pages nginx keeps;
            # only pages of requests without credentials are kept and served from here
"""


def _page_cache(name: str, mount: str, accel: str, auth: str) -> str:
    """A nested location keeping simple pages, revalidated by their serial ETag."""
    return f"""
        # Simple pages: kept by nginx for {CACHE_SECONDS} s, then revalidated with
        # If-None-Match against their serial ETag (a 304 renews them). Pages the
        # daemon marks no-store (built from a stale mirror cache) are never kept.
        location ~ ^{mount}/[^/+][^/]*/[^/+][^/]*/\\+simple/ {{
{_proxy(name, mount, accel, "            ")}{_PAGE_AUTH}            auth_request {auth};
            proxy_cache {name};
            proxy_cache_key "$scheme://$http_host$request_uri|$http_accept";
            proxy_cache_bypass {_CREDENTIALS};
            proxy_no_cache {_CREDENTIALS};
            proxy_cache_valid 200 {CACHE_SECONDS}s;
            proxy_cache_revalidate on;
            proxy_cache_lock on;
            add_header X-Cached $upstream_cache_status;
        }}
"""


def _authcheck(name: str, mount: str, auth: str) -> str:
    """The internal location nginx's ``auth_request`` asks: the daemon's /+authcheck
    with the original URI and the client's headers (credentials, cookie), its
    decisions kept AUTH_CACHE_SECONDS per URI and credentials."""
    return f"""
    # auth_request target: may the original request be served to its credentials?
    # (200 yes, 401 no credentials, 403 not a reader; see /+authcheck)
    location = {auth} {{
        internal;
        proxy_pass http://{name}/+authcheck;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Outside-Url ${name}_scheme://$http_host{mount};
        proxy_set_header X-Original-Uri $request_uri;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_cache {name}_auth;
        proxy_cache_key "$request_uri|$http_authorization|$http_x_devpi_auth|$http_cookie";
        proxy_cache_valid 200 401 403 {AUTH_CACHE_SECONDS}s;
        proxy_cache_methods GET HEAD;
    }}
"""


def nginx_site(config: Config, cache_dir: Path | None = None,
               auth_cache_dir: Path | None = None) -> str:
    """An nginx site (``map``, ``upstream`` and ``server`` blocks for ``http {}``);
    with ``cache_dir``, nginx also keeps simple pages (the caching variant).
    ``auth_cache_dir``: where nginx keeps /+authcheck decisions (default
    /var/cache/nginx/devpi-PORT-authcheck)."""
    outside = config.outside_url or DEFAULT_OUTSIDE_URL
    listen, server_name, mount = _listen(outside)
    name = f"devpi_{config.port}"
    files = config.serverdir / "+files"
    accel = accel_location(config)
    auth = authcheck_location(config)
    if auth_cache_dir is None:
        auth_cache_dir = Path(f"/var/cache/nginx/devpi-{config.port}-authcheck")
    cache_path = (f"\n# /+authcheck decisions (their keys hold the credentials: nginx keeps "
                  f"the\n# directory to its own user)\nproxy_cache_path {auth_cache_dir} "
                  f"levels=1:2 keys_zone={name}_auth:1m inactive=1m use_temp_path=off;\n")
    cache_location = ""
    bare_mount = ""
    if mount:  # the mount point without its slash leads into it
        bare_mount = (f"\n    location = {mount} {{\n"
                      f"        return 301 ${name}_scheme://$http_host{mount}/;\n    }}\n")
    if cache_dir is not None:
        cache_path += (f"proxy_cache_path {cache_dir} levels=1:2 keys_zone={name}:10m "
                       f"inactive=1h use_temp_path=off;\n")
        cache_location = _page_cache(name, mount, accel, auth)
    return f"""\
# nginx site for devpi-twisted, made by `devpi-twisted gen-config`.
# Include it inside the http {{}} block (e.g. /etc/nginx/sites-enabled/).
# nginx's worker user must be able to read {files}:
# nginx sends stored release files itself when the daemon answers X-Accel-Redirect.

map $http_x_forwarded_proto ${name}_scheme {{
    default $scheme;
    http http;
    https https;
}}

upstream {name} {{
    server {upstream_address(config)};
    keepalive 16;
}}
{cache_path}
server {{
    listen {listen};
    server_name {server_name} $hostname "";

    gzip on;
    gzip_min_length 2000;
    gzip_proxied any;
    gzip_types text/plain text/css text/xml application/json
               application/vnd.pypi.simple.v1+json application/vnd.pypi.simple.v1+html;

    # uploads: --max-request-body-size; replicas long-poll for up to 30 s
    client_max_body_size {config.max_request_body_size};
    proxy_read_timeout 60s;
    proxy_send_timeout 60s;

    location {mount}/ {{
{_proxy(name, mount, accel, "        ")}{cache_location}    }}
{bare_mount}
    location {accel} {{
        internal;
        auth_request {auth};
        alias {files}/;
    }}
{_authcheck(name, mount, auth)}}}
"""


def service_command(bindir: Path, args: Sequence[str], foreground: bool = True) -> str:
    twistd = str(bindir / "twistd")
    head = [twistd, "-n", "--pidfile=", "-l", "-"] if foreground else [twistd]
    return shlex.join([*head, "devpi", *args])


def systemd_unit(bindir: Path, args: Sequence[str], user: str) -> str:
    return f"""\
# systemd unit for devpi-twisted, made by `devpi-twisted gen-config`.
# Copy to /etc/systemd/system/devpi.service, then: systemctl enable --now devpi
[Unit]
Description=devpi-twisted package index server
Requires=network-online.target
After=network-online.target

[Service]
Type=simple
User={user}
ExecStart={service_command(bindir, args)}
Restart=on-failure
RestartSec=5
NoNewPrivileges=true

[Install]
WantedBy=multi-user.target
"""


def crontab(bindir: Path, args: Sequence[str], serverdir: Path, user: str) -> str:
    daemon = [str(bindir / "twistd"), "--pidfile", str(serverdir / "twistd.pid"),
              "--logfile", str(serverdir / "twistd.log"), "devpi", *args]
    return f"""\
# cron line for devpi-twisted, made by `devpi-twisted gen-config`.
# Starts the server in the background at boot as user {user} (the field after @reboot):
# copy this file to {CRON_FILE}.
@reboot {user} {shlex.join(daemon)}
"""


def supervisor_program(bindir: Path, args: Sequence[str], user: str) -> str:
    return f"""\
; supervisor program for devpi-twisted, made by `devpi-twisted gen-config`.
[program:devpi-twisted]
command = {service_command(bindir, args)}
user = {user}
priority = 999
startsecs = 5
redirect_stderr = True
autostart = True
autorestart = unexpected
stopsignal = TERM
"""


def supervisord_conf(here: Path) -> str:
    return f"""\
; supervisord.conf for devpi-twisted, made by `devpi-twisted gen-config`.
; Run: supervisord -c {here / "supervisord.conf"}
[unix_http_server]
file = /tmp/devpi-supervisor.sock

[supervisord]
logfile = /tmp/devpi-supervisord.log
pidfile = /tmp/devpi-supervisord.pid

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl = unix:///tmp/devpi-supervisor.sock

[include]
files = {here / "supervisor-devpi.conf"}
"""


CRON_FILE = "/etc/cron.d/devpi-twisted"


def usage_notes(target: Path, user: str) -> dict[str, str]:
    """File name -> what to do with it (one line each, printed after writing)."""
    return {
        "nginx-devpi.conf": "copy to /etc/nginx/sites-enabled/ (it goes in the http {} block), "
                            "then nginx -t && nginx -s reload",
        "nginx-devpi-caching.conf": "use instead of nginx-devpi.conf for nginx to also cache "
                                    "simple pages",
        "devpi.service": "copy to /etc/systemd/system/, then systemctl enable --now devpi "
                         f"(runs as {user})",
        "crontab": f"without systemd: copy to {CRON_FILE} to start the server at boot "
                   f"(runs as {user})",
        "supervisor-devpi.conf": "with supervisor: copy to /etc/supervisor/conf.d/, then "
                                 "supervisorctl update",
        "supervisord.conf": f"or run a supervisord of its own: supervisord -c "
                            f"{target / 'supervisord.conf'}",
    }


def generate(config: Config, args: Sequence[str], bindir: Path, user: str,
             target: Path, cache_dir: Path | None = None) -> dict[str, str]:
    """File name -> text of every generated file (``target`` is where they will be).
    Both nginx sites keep /+authcheck decisions beside ``cache_dir`` (``-authcheck``)."""
    if cache_dir is None:
        cache_dir = Path(f"/var/cache/nginx/devpi-{config.port}")
    auth_cache_dir = cache_dir.with_name(cache_dir.name + "-authcheck")
    return {
        "nginx-devpi.conf": nginx_site(config, auth_cache_dir=auth_cache_dir),
        "nginx-devpi-caching.conf": nginx_site(config, cache_dir, auth_cache_dir),
        "devpi.service": systemd_unit(bindir, args, user),
        "crontab": crontab(bindir, args, config.serverdir, user),
        "supervisor-devpi.conf": supervisor_program(bindir, args, user),
        "supervisord.conf": supervisord_conf(target),
    }


def write_files(target: Path, files: Mapping[str, str]) -> list[Path]:
    target.mkdir(exist_ok=True)
    written = []
    for name, text in files.items():
        path = target / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
