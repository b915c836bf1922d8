"""Links of a mirrored page as stored (dicts the domain layer reads, model/simple.py):
where a mirrored file is served (its entrypath), the record of one upstream link, the
link of a served path, and the hashes a first download must match."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from devpi_twisted.mirror.parse import UpstreamLink

Link = Mapping[str, Any]  # a stored link (see link_record)


def entrypath(name: str, link: UpstreamLink) -> str:
    """Where we serve a mirrored file: ``+f/<hash dirs>/`` with a sha256, else ``+e/``."""
    if link.hash_algo == "sha256" and link.hash_value:
        h = link.hash_value
        return f"{name}/+f/{h[:3]}/{h[3:16]}/{link.filename}"
    parts = urlsplit(link.url)
    folder = quote(f"{parts.netloc}{parts.path.rsplit('/', 1)[0]}".replace("/", "_"), safe="")
    return f"{name}/+e/{folder}/{link.filename}"


def link_record(name: str, link: UpstreamLink) -> dict[str, Any]:
    """The stored form of ``link`` on mirror ``name``: filename, entrypath, url,
    hash_spec, sha256, requires_python, yanked, core_metadata (sha256 of the PEP 658
    file or None), size, upload_time."""
    core = link.core_metadata
    return {
        "filename": link.filename, "entrypath": entrypath(name, link), "url": link.url,
        "hash_spec": f"{link.hash_algo}={link.hash_value}" if link.hash_value else "",
        "sha256": link.hash_value if link.hash_algo == "sha256" else None,
        "requires_python": link.requires_python, "yanked": link.yanked,
        "core_metadata": core[len("sha256="):] if isinstance(core, str)
        and core.startswith("sha256=") else None,
        "size": link.size, "upload_time": link.upload_time}


def served_link(page: Mapping[str, Any], relpath: str) -> Link | None:
    """The link of ``page`` (a stored page's value) whose entrypath is ``relpath`` (a
    ``.metadata`` path gives its release file's link with ``metadata`` True)."""
    base = relpath[:-len(".metadata")] if relpath.endswith(".metadata") else relpath
    links: list[Link] = page.get("links", [])
    for link in links:
        if link.get("entrypath") == base:
            if base != relpath:
                return {**link, "url": link["url"] + ".metadata", "metadata": True,
                        "sha256": link.get("core_metadata"), "hash_spec": (
                            f"sha256={link['core_metadata']}" if link.get("core_metadata")
                            else "")}
            return link
    return None


def expected_hashes(link: Link) -> dict[str, str]:
    """The hashes upstream's page gave for the file of ``link`` (algorithm -> hex digest),
    those hashlib knows."""
    expected = {}
    if link.get("sha256"):
        expected["sha256"] = str(link["sha256"])
    algo, _, value = str(link.get("hash_spec") or "").partition("=")
    if value and algo not in expected and algo in hashlib.algorithms_guaranteed \
            and not algo.startswith("shake_"):
        expected[algo] = value
    return expected
