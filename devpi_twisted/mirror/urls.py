"""Mirror URLs as they may be shown: credentials masked (issue 19 item 9).

Pure (no Twisted): the web layer, logs and the dump's summaries use it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

# Query and fragment keys whose values are secrets: ?token=, ?access_token=, ?api_key=,
# ?password=, ?auth=, ?client_secret=, ?X-Amz-Signature= ...
_SECRET_KEY = re.compile(r"key|token|secret|pass|auth|sig|credential|session", re.IGNORECASE)
MASK = "****"


def masked_url(url: str) -> str:
    """``url`` fit to show (JSON, pages, logs, status): the credentials it carries masked.

    User info becomes ``user:****@`` (a user with a password) or ``****@`` (a user
    alone is often a token; percent-encoded ``user%3Apass`` too); query and fragment
    values of keys that look secret (key, token, secret, pass, auth, sig, credential,
    session) become ``****``. Never raises. A "/", "?" or "#" in a password ends the
    authority early, so an "@" after the authority masks everything up to it.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, tail = _split_authority(rest)
    if "@" in tail:  # (also when the authority has one: "https://@#:secret@host/")
        host, tail = _split_authority(tail.rpartition("@")[2])
        authority = f"{MASK}@{host}"
    elif "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        authority = f"{user}:{MASK}@{host}" if colon and user else f"{MASK}@{host}"
    head, hash_, fragment = tail.partition("#")
    path, question, query = head.partition("?")
    shown = f"{scheme}{sep}{authority}{path}{question}{_masked_pairs(query)}{hash_}"
    return shown + _masked_pairs(fragment)


def _split_authority(rest: str) -> tuple[str, str]:
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    return rest[:end], rest[end:]


def _masked_pairs(text: str) -> str:
    """``a=1&token=x`` with the values of secret-looking keys masked. A "?" separates
    pairs too: in a fragment (``#x=?token=...``) it starts what reads as a query."""
    if "=" not in text:
        return text
    pairs = re.split(r"([&;?])", text)
    for i in range(0, len(pairs), 2):
        key, eq, value = pairs[i].partition("=")
        if eq and value and _SECRET_KEY.search(unquote_plus(key)):
            pairs[i] = f"{key}={MASK}"
    return "".join(pairs)
