"""Use cases of API tokens (devpi-tokens' API): create, list and revoke a user's tokens,
and resolve a token presented with a request to the identity it grants.

Who may manage a user's tokens: the user, logged in with a password or login token
(never with an API token: with one every ``user_*`` permission is denied), and root
or the ``--restrict-modify`` admins for any user. Tokens are looked up in the storage's
in-memory copy, which every worker and replica keeps current from the changelog, so a
revocation refuses the token as soon as the node has seen its serial. A token
whose signature checked out is remembered (by a digest), so a repeated one costs
lookups only. Uses are recorded on the first one and then at most once a minute
per token.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from devpi_twisted.model import apitokens as api
from devpi_twisted.model import audit
from devpi_twisted.model.acl import READ_REALM, ROOT, Identity, Policy, matches
from devpi_twisted.model.errors import Forbidden, NotFound, Unauthenticated
from devpi_twisted.storage.interface import RecordExists, RecordMissing, Storage, StorageError

USE_RECORD_SECONDS = 60.0
USES_REMEMBERED = 4096
CHECKED_REMEMBERED = 1024
TOKEN_USER = "__token__"  # twine's habit: the token as password of this user name


def is_admin(policy: Policy, identity: Identity) -> bool:
    """Root, or one of ``--restrict-modify``'s principals when it is set."""
    if identity.username == ROOT:
        return True
    return policy.restrict_modify is not None and matches(identity, policy.restrict_modify)


class ApiTokenOps:
    """Tokens' management and use. The audit records each token created and revoked,
    and its first use (as far as this node saw it)."""

    def __init__(self, storage: Storage, keys: api.TokenKeys, policy: Policy,
                 clock: Callable[[], float], auditor: audit.Auditor = audit.NO_AUDIT) -> None:
        self._storage = storage
        self._keys = keys
        self._policy = policy
        self._clock = clock
        self._audit = auditor
        self._recorded: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._checked: OrderedDict[bytes, tuple[api.Presented, str, api.Verified]] = OrderedDict()

    # -- management ---------------------------------------------------------------

    async def _managed(self, identity: Identity, user: str) -> None:
        """Refuse unless ``identity`` may manage ``user``'s tokens; NotFound for no user."""
        if not identity.authenticated:
            raise Unauthenticated("authentication required to manage tokens", challenge=True)
        if identity.scope is not None:
            raise Forbidden("tokens cannot be managed with an API token")
        if identity.username != user and not is_admin(self._policy, identity):
            raise Forbidden(f"no permission to manage tokens of user {user}")
        if await self._storage.get_user(user) is None:
            raise NotFound(f"no user '{user}'")

    async def create(self, identity: Identity, user: str, body: Any) -> tuple[int, str]:
        """(serial, token) of a new token of ``user`` restricted as ``body`` asks."""
        await self._managed(identity, user)
        now = self._clock()
        caveats = api.restrictions(body, now, is_admin(self._policy, identity))
        salt = api.new_salt()
        value = {"salt": salt, "created": now, "restrictions": caveats}
        for _ in range(5):
            token_id = api.new_token_id()
            try:
                serial = await self._storage.create_token(user, token_id, value)
            except RecordExists:
                continue  # an id taken already: 1 in 55**8 per token the user has
            except RecordMissing:
                raise NotFound(f"no user '{user}'") from None
            self._audit.record(audit.by(identity, audit.TOKEN_CREATED, user=user, token=token_id,
                                        restrictions=list(caveats)))
            return serial, api.mint(self._keys, user, token_id, salt, caveats)
        raise StorageError("no free token id found")

    async def list(self, identity: Identity, user: str) -> dict[str, Any]:
        """devpi-tokens' ``tokens-info`` result: id -> restrictions, created, uses."""
        await self._managed(identity, user)
        return {"tokens": {t.token_id: {"restrictions": list(t.restrictions),
                                        "created": t.created, "first_used": t.first_used,
                                        "last_used": t.last_used}
                           for t in await self._storage.list_tokens(user)}}

    async def delete(self, identity: Identity, user: str, token_id: str) -> int:
        """Revoke; the serial. NotFound for an unknown (or already revoked) id."""
        await self._managed(identity, user)
        try:
            serial = await self._storage.delete_token(user, token_id)
        except RecordMissing:
            raise NotFound(f"No token with id {token_id}") from None
        self._audit.record(audit.by(identity, audit.TOKEN_REVOKED, user=user, token=token_id))
        return serial

    # -- presented tokens ------------------------------------------------------------

    async def resolve(self, username: str, secret: str, client: str = "") -> Identity | None:
        """The identity an API token in these Basic credentials grants; None if they
        hold no token. Unauthenticated (saying why) for a token that cannot be used,
        Forbidden if the user name given is not the token's."""
        if secret == "" and username:
            username, secret = "", username  # the token as user name, empty password
        if not secret:
            return None
        digest = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()
        known = self._checked.get(digest)
        try:
            presented = known[0] if known is not None else api.parse(secret)
        except api.TokenRefused as e:
            raise _refused(str(e)) from None
        if presented is None:
            return None
        if username not in ("", TOKEN_USER) and username != presented.user:
            raise Forbidden("Token doesn't match user name")
        user, token_id = presented.user, presented.token_id
        if await self._storage.get_user(user) is None:
            raise _refused("the user of this API token no longer exists")
        record = await self._storage.get_token(user, token_id)
        if record is None:
            raise _refused(f"unknown API token id {token_id}")
        if record.revoked is not None:
            raise _refused(f"the API token {token_id} has been revoked")
        now = self._clock()
        try:
            if known is None or known[1] != record.salt:
                known = presented, record.salt, api.checked(self._keys, presented, record.salt)
                self._remember(digest, known)
            scope = known[2].scope_at(now)
        except api.TokenRefused as e:
            raise _refused(str(e)) from None
        await self._note_use(user, token_id, now, client)
        return Identity(user, scope=scope)

    def _remember(self, digest: bytes, checked: tuple[api.Presented, str, api.Verified]) -> None:
        """Tokens whose signature checked out, by a digest of the token: a repeated one
        is neither parsed nor verified again (its record, revocation and time window
        are checked on every use)."""
        self._checked[digest] = checked
        while len(self._checked) > CHECKED_REMEMBERED:
            self._checked.popitem(last=False)

    async def _note_use(self, user: str, token_id: str, now: float, client: str) -> None:
        key = (user, token_id)
        last = self._recorded.get(key)
        if last is not None and now - last < USE_RECORD_SECONDS:
            return
        self._recorded[key] = now
        self._recorded.move_to_end(key)
        while len(self._recorded) > USES_REMEMBERED:
            self._recorded.popitem(last=False)
        try:
            first = await self._storage.record_token_use(user, token_id, now)
        except StorageError:
            return  # a use not noted is no reason to refuse the request
        if first:
            self._audit.record(audit.AuditEvent(audit.TOKEN_USED, user, client, None,
                                                {"token": token_id}))



def require_scope(identity: Identity, permission: str, index: str | None = None,
                  project: str | None = None) -> None:
    """Forbidden (403) when the API token the identity came with does not let
    ``permission`` through on ``index`` (``user/index``) and ``project`` (normalised)."""
    if identity.scoped(permission, index, project):
        return
    where = "" if index is None else f" on {index}"
    what = "" if project is None else f" for project {project}"
    raise Forbidden(f"the API token does not allow {permission}{where}{what}")


def _refused(message: str) -> Unauthenticated:
    """A token that cannot be used: 401 saying why, with the Basic challenge every 401
    carries (RFC 9110 11.6.1), as for wrong passwords."""
    return Unauthenticated(message, challenge=True, realm=READ_REALM)
