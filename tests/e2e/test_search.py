"""``/+search`` against the real daemon (sqlite; PostgreSQL with two workers beside the
main process): a registered description and uploaded docs (their text extracted in a
thread of the process that took the upload) are found through every process at once,
and a private index's content only by its reader."""

from __future__ import annotations

import base64
import http.client
import io
import uuid
import zipfile
from urllib.parse import quote, urlsplit

from tests.support import Daemon, call, login


def _post_form(url: str, auth: tuple[str, str], fields: dict[str, str],
               file: tuple[str, bytes] | None = None) -> int:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    if file is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
                     f'filename="{file[0]}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                     .encode() + file[1] + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    target = urlsplit(url)
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    conn.request("POST", target.path, body, {
        "Content-Type": f"multipart/form-data; boundary={boundary}", "X-Devpi-Auth": token})
    status = conn.getresponse().status
    conn.close()
    return status


def _docs() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("index.html", "<title>Manual</title><p>Feed the axolotl daily.</p>")
        archive.writestr("more/page.html", "<script>alert(1)</script><p>salamander care</p>")
    return out.getvalue()


def _search(daemon: Daemon, query: str, auth: tuple[str, str] | None = None) -> dict:
    status, reply, _ = call(f"{daemon.url}/+search?query={quote(query)}", auth=auth)
    assert status == 200, reply
    return reply["result"]


def test_search_through_the_daemon(daemon: Daemon) -> None:
    assert call(daemon.url + "/searcher", "PUT", {"password": "pw"})[0] == 201
    auth = login(daemon.url, "searcher", "pw")
    assert call(daemon.url + "/searcher/pub", "PUT", {}, auth)[0] == 200
    assert call(daemon.url + "/searcher/priv", "PUT", {"acl_read": "searcher"}, auth)[0] == 200
    for index, name in (("pub", "tidy"), ("priv", "hush")):
        assert _post_form(f"{daemon.url}/searcher/{index}/", auth, {
            ":action": "submit", "name": name, "version": "1.0", "summary": "a tool",
            "description": f"{name} keeps the lagoon clean"}) == 200
    assert _post_form(f"{daemon.url}/searcher/pub/", auth, {
        ":action": "doc_upload", "name": "tidy", "version": "1.0"}, ("tidy-1.0.doc.zip", _docs())) == 200
    for _ in range(3):  # any of the processes answers: each sees the same rows
        result = _search(daemon, "lagoon")
        assert (result["total"], [h["path"] for h in result["hits"]]) == (1, ["/searcher/pub/tidy/1.0"])
        docs = _search(daemon, "axolotl")
        assert [(h["path"], h["title"]) for h in docs["hits"]] == [
            ("/searcher/pub/tidy/1.0/+d/index.html", "tidy 1.0: Manual")]
        assert _search(daemon, "alert")["total"] == 0  # scripts are no text
    assert _search(daemon, "lagoon", auth)["total"] == 2
    assert call(f"{daemon.url}/+search?query={'x' * 300}")[0] == 400
