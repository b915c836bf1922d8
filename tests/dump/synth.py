"""Synthetic dumps in devpi-server 6's format: many small files, quickly (for the
interrupted-import test and bench/bench_dump.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

def write_dump(directory: Path, files: int, per_version: int = 2, versions_per_project: int = 5,
               index: str = "alice/dev") -> dict[str, Any]:
    """A dump with ``files`` sdists of ~200 bytes, ``per_version`` per version; returns the
    parsed dataindex.json."""
    directory.mkdir(parents=True, exist_ok=True)
    projects: dict[str, dict[str, Any]] = {}
    descs = []
    for n in range(files):
        version_no, file_no = divmod(n, per_version)
        project_no, version_in_project = divmod(version_no, versions_per_project)
        project = f"pkg{project_no}"
        version = f"1.{version_in_project}"
        filename = f"{project}-{version}.tar.gz" if file_no == 0 else \
            f"{project}-{version}-py3-none-any.whl" if file_no == 1 else \
            f"{project}-{version}-{file_no}-py3-none-any.whl"
        relpath = f"{index}/{project}/{version}/{filename}"
        body = (f"{project} {version} file {file_no} ".encode() * 8)[:200]
        target = directory / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        sha = hashlib.sha256(body).hexdigest()
        projects.setdefault(project, {})[version] = {
            "name": project, "version": version, "summary": f"{project} summary"}
        descs.append({
            "type": "releasefile", "projectname": project, "version": version, "relpath": relpath,
            "entrymapping": {"last_modified": "Wed, 25 Nov 2026 10:00:00 GMT",
                             "hash_spec": f"sha256={sha}", "hashes": {"sha256": sha},
                             "project": project, "version": version},
            "log": [{"what": "upload", "who": "alice", "when": [2026, 11, 25, 10, 0, 0],
                     "dst": index}]})
    user = index.split("/")[0]
    data = {
        "dumpversion": "2", "devpi_server": "6.20.3", "pythonversion": [3, 11, 7, "final", 0],
        "users": {user: {"username": user, "created": "2026-11-25T10:00:00Z"},
                  "root": {"username": "root", "created": "2026-11-25T10:00:00Z"}},
        "indexes": {index: {"indexconfig": {"type": "stage", "bases": [], "volatile": True,
                                            "acl_upload": [user]},
                            "projects": projects, "files": descs}},
    }
    (directory / "dataindex.json").write_text(json.dumps(data))
    return data
