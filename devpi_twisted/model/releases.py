"""Release files and version data: filenames, upload checks, metadata records, paths.

Pure rules of spec/model.md 1.2, 1.3, 7, 8 and api.md 8; the messages are devpi's
(``%r`` formatting included) because twine and devpi-client show them to users.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.names import hidden_char, normalize_project
from devpi_twisted.storage.values import ELINKS

# -- splitting filenames (model.md 1.3) ---------------------------------------------

MAX_FILENAME = 255  # what file systems store; also bounds the work of splitting
# Longest first: ".doc.zip" before ".zip", ".tar.gz" before ".tar".
_EXTENSIONS = (".doc.zip", ".tar.bz2", ".tar.gz", ".tgz", ".zip", ".egg", ".exe", ".msi",
               ".rpm", ".deb", ".dmg", ".tar")
# What old bdists put between the version and the extension; a tail is taken only
# where the rest still splits into project and version.
_TAIL = r"(?:{})\Z"
_PLATFORM_TAIL = re.compile(_TAIL.format("|".join((
    # eggs and wininst: "-py2.7", "-py2.7-linux-x86_64", "-cp39-cp39-win_amd64"
    r"-(?:py|cp|pp|ip|jy)\d[\d.]*(?:-[A-Za-z0-9_.-]+)?",
    # bdist_dumb and wininst: ".linux-x86_64", ".macosx-10.6-intel", ".win32-py2.7"
    r"\.(?:win32|win-amd64|win_amd64|linux-[A-Za-z0-9_]+|macosx-\d[A-Za-z0-9_.-]*"
    r"|cygwin-[A-Za-z0-9_.-]+|freebsd-[A-Za-z0-9_.-]+|solaris-[A-Za-z0-9_.-]+)"
    r"(?:-py\d[\d.]*)?",
))), re.IGNORECASE)
# bdist_rpm: "-1.noarch", "-2.src"
_RPM_TAIL = re.compile(_TAIL.format(
    r"-[^-]+\.(?:noarch|src|x86_64|i[3-6]86|aarch64|ppc64le|ppc64|s390x|armv7hl)"), re.IGNORECASE)
# setuptools-era versions that are not PEP 440 ("1.0-beta-2", "2.1rc1-dev").
_LEGACY_VERSION = re.compile(r"\d[A-Za-z0-9_.!+-]*")
_WHITESPACE = re.compile(r"\s")


def _is_pep440(text: str) -> bool:
    if not text or _WHITESPACE.search(text):  # packaging strips surrounding whitespace
        return False
    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


def _split_at_version(stem: str, fallback: bool) -> tuple[str, str] | None:
    """Project and version of ``name-version``: the first '-' followed by a PEP 440
    version, else by a legacy one, else (with ``fallback``) the last '-'."""
    dashes = [i for i, char in enumerate(stem) if char == "-" and i > 0]
    for accepts in (_is_pep440, _LEGACY_VERSION.fullmatch):
        for i in dashes:
            if accepts(stem[i + 1:]):
                return stem[:i], stem[i + 1:]
    if fallback and dashes and dashes[-1] < len(stem) - 1:
        return stem[:dashes[-1]], stem[dashes[-1] + 1:]
    return None


def _split_wheel(filename: str) -> tuple[str, str, str]:
    parts = filename[:-len(".whl")].split("-")
    try:
        parse_wheel_filename(filename)
    except InvalidWheelFilename:
        # Old or hand-made wheels (escaped local versions, odd names) still split
        # by position, as devpi does; only the shape is required.
        if len(parts) not in (5, 6) or not all(parts) or (len(parts) == 6 and not parts[2][0].isdigit()):
            raise InvalidInput(f"{filename!r} is not a valid wheel filename") from None
    return parts[0], parts[1], "-" + "-".join(parts[2:]) + filename[-len(".whl"):]


def split_filename(filename: str) -> tuple[str, str, str]:
    """``(project as spelled, version, suffix)`` of a release filename (model.md 1.3).

    ``project + "-" + version + suffix == filename``. Raises InvalidInput when no
    known extension or no ``-version`` part can be found, or for names longer
    than MAX_FILENAME.
    """
    if len(filename) > MAX_FILENAME:
        raise InvalidInput(f"filename {filename[:40]!r}... is longer than {MAX_FILENAME} characters")
    lowered = filename.lower()
    if lowered.endswith(".whl"):
        return _split_wheel(filename)
    ext = next((e for e in _EXTENSIONS if lowered.endswith(e)), None)
    if ext is None:
        raise InvalidInput(f"{filename!r} has no known release file extension")
    stem, suffix = filename[:-len(ext)], filename[-len(ext):]
    if ext != ".doc.zip":
        tail = _RPM_TAIL if ext == ".rpm" else _PLATFORM_TAIL
        for start in range(len(stem)):  # the longest tail first
            if tail.match(stem, start) is not None:
                split = _split_at_version(stem[:start], fallback=False)
                if split is not None:
                    return split[0], split[1], stem[start:] + suffix
    split = _split_at_version(stem, fallback=True)
    if split is None:
        raise InvalidInput(f"{filename!r} does not have the form project-version{ext}")
    return split[0], split[1], suffix


def wheel_tags(filename: str) -> tuple[str, str, str]:
    """The python, abi and platform tags of a wheel filename as written (``py2.py3``)."""
    if not filename.lower().endswith(".whl"):
        raise InvalidInput(f"{filename!r} is not a wheel")
    _, _, suffix = _split_wheel(filename)
    python, abi, platform = suffix[:-len(".whl")].split("-")[-3:]
    return python, abi, platform


_PY_TAG_VERSION = re.compile(r"(?:py|cp|pp|ip|jy)(\d+(?:\.\d+)*)", re.IGNORECASE)
_FILETYPES = {".egg": "bdist_egg", ".exe": "bdist_wininst", ".msi": "bdist_msi"}


def pyversion_and_filetype(filename: str) -> tuple[str, str]:
    """The legacy form's ``pyversion`` and ``filetype`` for pushing ``filename`` (api.md 9.2).

    sdists give ``("source", "sdist")``; wheels ``(python tag, "bdist_wheel")`` as
    twine sends it; eggs and installers the Python version in their name, or
    ``"any"``; anything else ``("any", "bdist_dumb")``.
    """
    _, _, suffix = split_filename(filename)
    lowered = suffix.lower()
    if lowered in (".zip", ".tar.gz", ".tgz", ".tar.bz2"):
        return "source", "sdist"
    if lowered.endswith(".whl"):
        return wheel_tags(filename)[0], "bdist_wheel"
    ext = lowered[lowered.rfind("."):]
    if ext in _FILETYPES:
        found = _PY_TAG_VERSION.search(suffix)
        return (found.group(1) if found else "any"), _FILETYPES[ext]
    return "any", "bdist_dumb"


# -- upload checks (api.md 8.2) and registration (model.md 1.2) --------------------

_ARCHIVE_NAME = re.compile(r".+?\.(?:exe|tar\.gz|bz2|rpm|deb|zip|tgz|egg|dmg|msi|whl)", re.IGNORECASE)
_NOT_WHEEL_SAFE = re.compile(r"[^\w.]+")  # devpi's PEP 427 escaping (Unicode \w)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_plain_filename(filename: str) -> str:
    """Return ``filename`` if it names a file and nothing else, else raise InvalidInput.

    Refused: empty names, '/', '\\', ASCII control characters (NUL, CR, LF, ...),
    a leading '.', '..' anywhere, and more than 255 bytes of UTF-8.
    """
    if len(filename.encode("utf-8", "surrogatepass")) > MAX_FILENAME:
        raise InvalidInput(f"invalid filename {filename[:40]!r}...: longer than {MAX_FILENAME} bytes")
    if (not filename or "/" in filename or "\\" in filename or _CONTROL.search(filename)
            or filename.startswith(".") or ".." in filename):
        raise InvalidInput(
            f"invalid filename {filename!r}: a file name may not be empty, contain '/', "
            "'\\', '..' or control characters, or start with '.'")
    return filename


def version_in_filename(version: str, filename: str) -> bool:
    """Whether ``version`` occurs in ``filename`` literally or wheel-escaped."""
    return version in filename or _NOT_WHEEL_SAFE.sub("_", version) in filename


def check_release_filename(filename: str, name: str, version: str) -> None:
    """The filename checks of a file upload, in devpi's order (api.md 8.2 steps 1-3).

    Raises InvalidInput: for path tricks first, then version missing from the
    name, not an archive, not starting with the project name, and (ours) a wheel
    whose name breaks the wheel naming rule.
    """
    check_plain_filename(filename)
    if not version_in_filename(version, filename):
        raise InvalidInput(f"filename {filename!r} does not contain version {version!r}")
    if _ARCHIVE_NAME.fullmatch(filename) is None:
        raise InvalidInput(f"{filename!r} is not a valid archive name")
    if not normalize_project(filename).startswith(normalize_project(name)):
        raise InvalidInput(f"filename {filename!r} does not match project name {name!r}")
    if filename.lower().endswith(".whl"):
        try:
            parse_wheel_filename(filename)
        except InvalidWheelFilename as e:
            raise InvalidInput(f"{filename!r} is not a valid wheel filename: {e}") from None


_LEGAL_NAME = re.compile(r"[A-Za-z0-9._-]+")
_URL_UNSAFE = re.compile(r'[<>%#"]')
MAX_NAME_OR_VERSION = 200  # characters; file names hold both (MAX_FILENAME)


def check_registration(name: str, version: str) -> None:
    """Validate the name and version of a registration (model.md 1.2).

    Raises InvalidInput with devpi's ``invalid metadata: <reason>``.
    """
    if not name:
        reason = 'Missing required field "name"'
    elif not version:
        reason = 'Missing required field "version"'
    elif _LEGAL_NAME.fullmatch(name) is None:
        reason = ("Invalid package name. Names must contain only ASCII letters, "
                  "digits, underscores, hyphens, and periods")
    elif not name[0].isalnum():
        reason = "Invalid package name. Names must start with an ASCII letter or digit"
    elif not name[-1].isalnum():
        reason = "Invalid package name. Names must end with an ASCII letter or digit"
    elif _URL_UNSAFE.search(name + version):
        reason = "Invalid package name or version (URL safety)"
    elif hidden_char(version) is not None:  # CR, LF, NUL, zero-width, lone surrogates
        reason = "Invalid version: control characters (CR, LF, NUL...) are not allowed"
    elif max(len(name), len(version)) > MAX_NAME_OR_VERSION:
        reason = f"Invalid package name or version: longer than {MAX_NAME_OR_VERSION} characters"
    else:
        return
    raise InvalidInput(f"invalid metadata: {reason}")


# -- version data (model.md 7.1) ---------------------------------------------------

METADATA_KEYS = (
    "name", "version", "metadata_version", "summary", "home_page", "author",
    "author_email", "maintainer", "maintainer_email", "license", "description",
    "keywords", "platform", "classifiers", "download_url", "supported_platform",
    "comment", "provides", "requires", "obsoletes", "project_urls", "provides_dist",
    "obsoletes_dist", "requires_dist", "requires_external", "requires_python",
    "description_content_type", "provides_extras", "dynamic", "license_expression",
    "license_file",
)
LIST_KEYS = frozenset({
    "platform", "classifiers", "supported_platform", "provides", "requires", "obsoletes",
    "project_urls", "provides_dist", "obsoletes_dist", "requires_dist",
    "requires_external", "provides_extras", "dynamic", "license_file",
})


def metadata_from_form(fields: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Metadata keys present in an upload form (api.md 8.1).

    List keys get every non-empty occurrence; other keys the first value, with
    ``UNKNOWN`` stored as ``""`` (as devpi, only for non-list keys).
    """
    metadata: dict[str, Any] = {}
    for key in METADATA_KEYS:
        if key not in fields:
            continue
        values = fields[key]
        if key in LIST_KEYS:
            metadata[key] = [value for value in values if value]
        else:
            value = values[0] if values else ""
            metadata[key] = "" if value == "UNKNOWN" else value
    return metadata


def _defaults() -> dict[str, Any]:
    return {key: [] if key in LIST_KEYS else "" for key in METADATA_KEYS}


def new_version_data(name: str, version: str, form_metadata: Mapping[str, Any],
                     full: bool) -> dict[str, Any]:
    """A new record: every metadata key (``""``/``[]`` when missing) if ``full``,
    else only what the form had; ``name`` and ``version`` always as given."""
    data = _defaults() if full else {}
    data.update(_public(form_metadata))
    data["name"], data["version"] = name, version
    return data


def update_version_data(existing: Mapping[str, Any] | None,
                        form_metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``existing`` with the form's keys replaced; other keys, ``+`` keys included, kept.

    With no existing record, a full default record is created first (api.md 8.2).
    The result shares no mutable value with the arguments.
    """
    data = copy.deepcopy(dict(existing)) if existing is not None else _defaults()
    data.update(_public(form_metadata))
    return data


def _public(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in metadata.items() if not k.startswith("+")}


# -- file paths and logs (model.md 8.1, 8.3) ---------------------------------------

_HEX = re.compile(r"[0-9a-fA-F]{16,}")


def with_mirrored(versions: Mapping[str, dict[str, Any]],
                  mirrored: Iterable[Mapping[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The stages' ``versions`` (they win), then the mirrors' (in resolution order): a
    version already there takes a later one under ``+shadowing`` (api.md 7.3)."""
    merged = dict(versions)
    for found in mirrored:
        for version, data in found.items():
            if version in merged:
                merged[version].setdefault("+shadowing", []).append(data)
            else:
                merged[version] = data
    return merged


def api_view(data: Mapping[str, Any], base: str) -> dict[str, Any]:
    """Version data as devpi's API shows it: ``+elinks`` become ``+links`` with absolute
    URLs under ``base``; the versions it shadows (``+shadowing``) likewise."""
    shown = {k: v for k, v in data.items() if k not in (ELINKS, "+shadowing")}
    links = []
    for link in data.get(ELINKS, []):
        item = {"rel": link.get("rel"), "href": f"{base}/{link['entrypath']}",
                "hash_spec": link.get("hash_spec", ""), "hashes": link.get("hashes", {}),
                "log": link.get("_log", [])}
        if link.get("for_entrypath"):
            item["for_href"] = f"{base}/{link['for_entrypath']}"
        links.append(item)
    shown["+links"] = links
    if data.get("+shadowing"):
        shown["+shadowing"] = [api_view(d, base) for d in data["+shadowing"]]
    return shown

def relpath(user: str, index: str, sha256_hex: str, filename: str) -> str:
    """``user/index/+f/AAA/BBBBBBBBBBBBB/filename``: the first 3 and next 13 hex digits.

    Raises InvalidInput for a filename that is not plain (``check_plain_filename``)
    and ValueError for a hash that is not at least 16 hex digits.
    """
    if _HEX.fullmatch(sha256_hex) is None:
        raise ValueError(f"not a hex digest: {sha256_hex!r}")
    check_plain_filename(filename)
    return f"{user}/{index}/+f/{sha256_hex[:3]}/{sha256_hex[3:16]}/{filename}"


def doczip_filename(project_normalised: str, version: str) -> str:
    """``<project>-<version>.doc.zip``; InvalidInput if that is no plain filename."""
    return check_plain_filename(f"{normalize_project(project_normalised)}-{version}.doc.zip")


def toxresult_filename(release_filename: str, when: Sequence[int], count: int) -> str:
    """``<release>.toxresult-<YYYYmmddHHMMSS>-<count>``; ``when`` is a UTC time tuple
    (``time.gmtime()`` or a log entry's ``when``), ``count`` the file's toxresults so far."""
    if count < 0:
        raise ValueError(f"negative toxresult count {count}")
    year, month, day, hour, minute, second = when[:6]
    stamp = f"{year:04d}{month:02d}{day:02d}{hour:02d}{minute:02d}{second:02d}"
    return f"{release_filename}.toxresult-{stamp}-{count}"


def log_entry(what: str, who: str | None, now: float, **extra: Any) -> dict[str, Any]:
    """A link history entry: ``{"what", "who", "when": [Y, M, D, h, m, s] (UTC), **extra}``."""
    return {"what": what, "who": who, "when": list(time.gmtime(now)[:6]), **extra}


# -- version ordering (model.md 1.3) -----------------------------------------------

_LEGACY_PART = re.compile(r"(\d+|[a-z]+|\.|-)")
_LEGACY_SPELLING = {"pre": "c", "preview": "c", "-": "final-", "rc": "c", "dev": "@"}

VersionKey = tuple[int, Any]


def _legacy_parts(version: str) -> tuple[str, ...]:
    """setuptools' pre-PEP 440 ordering: numbers zero-padded, words marked with '*',
    pre-release words sorting before ``*final``, trailing zeros dropped."""
    parts: list[str] = []
    for raw in _LEGACY_PART.split(version.lower()):
        part = _LEGACY_SPELLING.get(raw, raw)
        if not part or part == ".":
            continue
        part = part.zfill(8) if part[0].isdigit() else "*" + part
        if part.startswith("*"):
            if part < "*final":
                while parts and parts[-1] == "*final-":
                    parts.pop()
            while parts and parts[-1] == "00000000":
                parts.pop()
        parts.append(part)
    while parts and parts[-1] == "00000000":
        parts.pop()
    parts.append("*final")
    return tuple(parts)


def version_sort_key(version: str) -> VersionKey:
    """Sort key: PEP 440 order, every non-PEP 440 string below all PEP 440 ones in
    setuptools' legacy order (as packaging's LegacyVersion with its epoch -1)."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, _legacy_parts(version))


def latest_version(versions: Iterable[str]) -> str | None:
    """The greatest version (pre-releases included), or None for no versions."""
    return max(versions, key=version_sort_key, default=None)
