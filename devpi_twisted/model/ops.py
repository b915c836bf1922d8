"""Use cases of the management API: users, login, indexes.

Each operation checks permissions and rules with the pure functions of this
package, then makes one storage write. Read-modify-write operations hand the
serial they read to storage, which refuses the write if the record changed
meanwhile; the operation then reads again and retries (``retry.retrying``), so
concurrent edits of one user or index never lose an acknowledged change.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from devpi_twisted.model import audit
from devpi_twisted.model import hooks
from devpi_twisted.model import indexes as idx
from devpi_twisted.model import users as usr
from devpi_twisted.model.acl import (
    ANONYMOUS_IDENTITY, INDEX_CREATE, INDEX_DELETE, INDEX_MODIFY, ROOT, Identity, Policy, may_read,
    shown_config,
)
from devpi_twisted.model.directory import Directory, DirectoryUsers
from devpi_twisted.model.errors import (
    AlreadyExists, Forbidden, InvalidInput, NotFound, TooManyAttempts, Unauthenticated,
)
from devpi_twisted.model.inheritance_info import inheritance_info
from devpi_twisted.model.names import MAX_NAME, can_be_stored, check_name, normalize_project
from devpi_twisted.model.policy import BLOCKS_KEY
from devpi_twisted.model.passwords import (
    DUMMY_HASH, VerifiedPasswords, check_password, hash_password,
)
from devpi_twisted.model.retry import retrying
from devpi_twisted.model.throttle import LoginThrottle
from devpi_twisted.model.token_ops import ApiTokenOps, require_scope
from devpi_twisted.model.tokens import LOGIN_TOKEN_MAX_AGE, NotAToken, TokenExpired, TokenSigner
from devpi_twisted.storage.interface import (
    IndexRecord, RecordExists, RecordMissing, StaleRecord, Storage, UserRecord,
)
from devpi_twisted.storage.hooktypes import HookEvent
from devpi_twisted.storage.values import IndexConfig

Offload = Callable[..., Awaitable[Any]]
Pause = Callable[[float], Awaitable[Any]]

THROTTLED_ANSWER_DELAY = 1.0


@attrs.frozen
class Written:
    """The outcome of a write: the serial it committed (None if nothing changed) and a result."""

    serial: int | None
    result: Any = None
    message: str | None = None


class ServerOps:
    """``hashing`` runs argon2 (checks and new hashes): a bounded pool of its own in the
    server, which raises Unavailable when full; ``throttle`` slows failed logins down;
    ``pause(seconds)`` waits on the reactor's clock (holding a throttled answer back);
    ``directory``: an LDAP directory asked about users no local user is (model/directory.py)."""

    def __init__(self, storage: Storage, policy: Policy, signer: TokenSigner,
                 offload: Offload, clock: Callable[[], float], hashing: Offload | None = None,
                 throttle: LoginThrottle | None = None, pause: Pause | None = None,
                 directory: Directory | None = None,
                 auditor: audit.Auditor = audit.NO_AUDIT) -> None:
        self._storage = storage
        self._audit = auditor
        self._policy = policy
        self._signer = signer
        self._offload = offload
        self._hashing = hashing or offload
        self._clock = clock
        self._verified = VerifiedPasswords(clock)
        self._throttle = throttle or LoginThrottle(clock)
        self._pause = pause
        self._directory = None if directory is None else DirectoryUsers(
            directory, storage, signer, self._throttle, clock, pause)
        self.api_tokens = ApiTokenOps(storage, signer.api_keys, policy, clock, auditor)

    @property
    def serial(self) -> int:
        return self._storage.serial

    @property
    def identity_serial(self) -> int:
        """The serial of the last change to users, passwords, tokens or indexes."""
        return self._storage.identity_serial

    async def sync(self) -> None:
        """Catch up with other processes' commits before reporting the serial."""
        await self._storage.sync()

    def now(self) -> float:
        return self._clock()

    @property
    def last_commit_time(self) -> float | None:
        return self._storage.last_commit_time

    # -- authentication -------------------------------------------------------

    async def authenticate(self, username: str, secret: str, client: str = "") -> Identity:
        """The identity for credentials: a login token, an API token (Unauthenticated or
        Forbidden if it cannot be used), else the password; anonymous if none.
        ``client`` is the address failed logins are counted for; raises TooManyAttempts
        while they throttle it or the user, Unavailable when the checks are all busy."""
        try:
            payload = self._signer.check(secret, LOGIN_TOKEN_MAX_AGE)
        except TokenExpired:
            return ANONYMOUS_IDENTITY
        except NotAToken:
            token = await self.api_tokens.resolve(username, secret, client)  # raises if refused
            if token is not None:
                return token
            return await self._password_identity(username, secret, client)
        if self._directory is not None and self._directory.vouched(payload):
            return await self._directory.token_identity(username, payload) or ANONYMOUS_IDENTITY
        if not (isinstance(payload, list) and len(payload) == 4 and payload[0] == username
                and payload[2] is True and isinstance(payload[3], str)):
            return ANONYMOUS_IDENTITY  # includes tokens made before they named a password
        name, groups, _, stamp = payload
        user = await self._storage.get_user(name)
        if user is None or not hmac.compare_digest(stamp, self._user_stamp(user)):
            return ANONYMOUS_IDENTITY  # deleted, re-created or given a new password since
        return Identity(name, frozenset(str(g) for g in groups or ()))

    def _user_stamp(self, user: UserRecord) -> str:
        """What a login token binds to: the user's password hash and creation time, so a
        new password or a re-created user refuses older tokens, on every worker and
        replica (both come from the replicated user record)."""
        return self._signer.stamp(user.name, user.pwhash or "", str(user.profile.get("created", "")))

    async def _password_identity(self, username: str, password: str, client: str) -> Identity:
        if self._directory is not None and await self._directory.serves(username):
            return await self._directory.identity(username, password, client) or ANONYMOUS_IDENTITY
        if await self._check_password(username, password, client) is not None:
            return Identity(username)
        return ANONYMOUS_IDENTITY

    async def _check_password(self, username: str, password: str,
                              client: str) -> UserRecord | None:
        """The user record the password was checked against, None for a wrong password.

        An unknown user costs what a wrong password costs (a check against a dummy
        hash); throttled attempts and a full pool of checks raise before computing."""
        user = None if username.startswith("+") or not can_be_stored(username) \
            else await self._storage.get_user(username)
        pwhash = user.pwhash if user is not None else None
        if user is not None and pwhash and self._verified.known(user.name, password, pwhash, client):
            return user
        # however the name was spelt; an unknown name is cut to what a name can be, so
        # the throttle's table of failures stays small whatever names are sent
        key = user.name if user is not None else username[:MAX_NAME]
        wait = self._throttle.wait(key, client)
        if wait > 0:
            self._audit.record(audit.login_failed(key, client, audit.THROTTLED))
            await self._hold_back(wait)
            raise TooManyAttempts("too many failed logins, try again later", retry_after=wait)
        self._throttle.started(key, client)
        try:
            matches, rehash = await self._hashing(check_password, password, pwhash or DUMMY_HASH)
        finally:
            self._throttle.settled(key, client)
        if not matches or user is None or not pwhash:
            self._throttle.failed(key, client)
            self._audit.record(audit.login_failed(key, client, audit.WRONG if user else audit.UNKNOWN))
            return None
        self._throttle.succeeded(key)
        self._verified.add(user.name, password, pwhash, client)
        if rehash:
            return await self._rehash(user, password)
        return user

    async def _hold_back(self, wait: float) -> None:
        """A throttled answer comes after a moment (at most the wait): a client that
        ignores ``Retry-After`` sends one attempt a second per connection, not hundreds."""
        if self._pause is not None:
            await self._pause(min(wait, THROTTLED_ANSWER_DELAY))

    async def _rehash(self, user: UserRecord, password: str) -> UserRecord:
        """Replace a verified legacy hash (imported from an old devpi) with argon2id and
        return the record as stored; a concurrent change of the user wins."""
        pwhash = str(await self._hashing(hash_password, password))
        try:
            serial = await self._storage.update_user(user.name, user.profile, pwhash, user.serial)
        except (StaleRecord, RecordMissing):
            return user
        return attrs.evolve(user, pwhash=pwhash, serial=serial)

    def _token(self, user: UserRecord) -> dict[str, Any]:
        token = self._signer.make([user.name, [], True, self._user_stamp(user)])
        return {"password": token, "expiration": LOGIN_TOKEN_MAX_AGE}

    async def login(self, body: Any, client: str = "") -> dict[str, Any]:
        """A login token for ``{"user": ..., "password": ...}``; raises Unauthenticated,
        and what ``authenticate`` raises for a password."""
        if not isinstance(body, Mapping) or not isinstance(body.get("user"), str) \
                or not isinstance(body.get("password"), str):
            raise InvalidInput("Bad request: no user/password specified")
        user, password = body["user"], body["password"]
        if self._directory is not None and await self._directory.serves(user):
            return await self._directory.login(user, password, client)
        record = await self._check_password(user, password, client)
        if record is None:
            raise Unauthenticated(f"user '{user}' could not be authenticated")
        self._audit.record(audit.AuditEvent(audit.LOGIN, record.name, client))
        return self._token(record)

    # -- users ----------------------------------------------------------------

    async def _user(self, name: str) -> UserRecord:
        user = await self._storage.get_user(name)
        if user is None:
            raise NotFound(f"no user '{name}'")
        return user

    async def hidden_indexes(self, reader: Identity) -> frozenset[str]:
        """The ``user/index`` names ``reader`` may not read (never shown to it)."""
        indexes = await self._storage.list_indexes()
        return frozenset(i.name for i in indexes if not may_read(reader, i.user, i.index, i.config.acl_read))

    async def _indexes_view(self, reader: Identity | None) -> dict[str, dict[str, Any]]:
        """user -> index -> config of what ``reader`` may read (None: all; acl.shown_config)."""
        hidden = frozenset() if reader is None else await self.hidden_indexes(reader)
        found: dict[str, dict[str, Any]] = {}
        for i in await self._storage.list_indexes():
            if i.name not in hidden:
                found.setdefault(i.user, {})[i.index] = shown_config(i.config.to_json(), hidden)
        return found

    async def get_user(self, name: str, reader: Identity | None = None) -> dict[str, Any]:
        user = await self._user(name)
        return usr.public_view(name, user.profile, (await self._indexes_view(reader)).get(name, {}))

    async def list_users(self, reader: Identity | None = None) -> dict[str, Any]:
        """Users and their indexes (of ``get_user`` too): those ``reader`` may read."""
        by_user = await self._indexes_view(reader)
        return {u.name: usr.public_view(u.name, u.profile, by_user.get(u.name, {}))
                for u in await self._storage.list_users()}

    async def _pwhash(self, change: usr.UserChange, old: str | None) -> str | None:
        if change.pwhash is not None:
            return change.pwhash
        if change.password is not None:
            return str(await self._hashing(hash_password, change.password))
        return old

    async def create_user(self, identity: Identity, name: str, body: Any) -> Written:
        check_name("username", name)
        if identity.scope is not None or not self._policy.may_create_user(identity):
            raise Forbidden(f"no permission to create user {name}")
        if await self._storage.get_user(name) is not None:
            raise AlreadyExists("user already exists")
        change = usr.new_user(body, self._clock(), may_set_hash=_is_root(identity))
        pwhash = await self._pwhash(change, None)
        try:
            serial = await self._storage.create_user(name, change.profile, pwhash)
        except RecordExists:
            raise AlreadyExists("user already exists") from None
        self._audit.record(audit.by(identity, audit.USER_CREATED, user=name))
        return Written(serial, usr.public_view(name, change.profile, {}))

    async def modify_user(self, identity: Identity, name: str, body: Any) -> Written:
        """Result: a fresh login token if the password was set, else None."""

        async def attempt() -> Written:
            user = await self._user(name)
            password_only = usr.is_password_only(user.profile, body)
            if identity.scope is not None or \
                    not self._policy.may_modify_user(identity, name, password_only):
                what = "change password for" if password_only else "modify"
                raise Forbidden(f"no permission to {what} user {name}")
            change = usr.modify_user(user.profile, body, self._clock(),
                                     may_set_hash=_is_root(identity))
            if change.profile == dict(user.profile) and not change.sets_password:
                return Written(None, None, "user updated")
            pwhash = await self._pwhash(change, user.pwhash)
            try:
                serial = await self._storage.update_user(name, change.profile, pwhash, user.serial)
            except RecordMissing:
                raise NotFound(f"no user '{name}'") from None
            self._audit.record(audit.user_modified(identity, name, user.profile, change.profile,
                                                   change.sets_password))
            if change.sets_password:
                stored = UserRecord(name, change.profile, pwhash, serial)
                return Written(serial, self._token(stored), "user updated, new proxy auth")
            return Written(serial, None, "user updated")
        return await retrying(attempt, _busy(name))

    async def delete_user(self, identity: Identity, name: str) -> Written:
        async def attempt() -> Written:
            user = await self._user(name)
            if identity.scope is not None or not self._policy.may_delete_user(identity, name):
                raise Forbidden(f"no permission to delete user {name}")
            owned = await self._storage.list_indexes(name)
            for index in owned:
                if not index.config.volatile:
                    raise Forbidden(f"user '{name}' has non-volatile index: {index.index}")
            expect = {i.index: i.serial for i in owned}
            try:
                serial = await self._storage.delete_user(name, user.serial, expect)
            except RecordMissing:
                raise NotFound(f"no user '{name}'") from None
            self._audit.record(audit.by(identity, audit.USER_DELETED, user=name, indexes=sorted(expect)))
            return Written(serial, None, f"user '{name}' deleted")
        return await retrying(attempt, _busy(name))

    # -- indexes --------------------------------------------------------------

    async def _index(self, user: str, index: str) -> IndexRecord:
        record = await self._storage.get_index(user, index)
        if record is None:
            raise NotFound(f"The stage {user}/{index} could not be found.")
        return record

    async def _all_configs(self) -> dict[str, Mapping[str, Any]]:
        return {i.name: i.config.to_json() for i in await self._storage.list_indexes()}

    async def get_index(self, user: str, index: str) -> IndexConfig:
        return (await self._index(user, index)).config

    async def index_exists(self, user: str, index: str) -> bool:
        return await self._storage.get_index(user, index) is not None

    async def create_index(self, identity: Identity, user: str, index: str, body: Any) -> Written:
        name = f"{user}/{index}"
        if not isinstance(body, Mapping):
            raise InvalidInput("Bad request: expected a JSON object")
        await self._user(user)
        if not self._policy.may_manage_index(identity, user):
            raise Forbidden(f"no permission to create index {name}")
        require_scope(identity, INDEX_CREATE, name)
        if await self._storage.get_index(user, index) is not None:
            raise AlreadyExists(f"index '{name}' exists")
        config = idx.new_config(name, body, await self._all_configs())
        _check_blocks_kept(config, {})
        await self._check_readers(config, ())
        try:
            serial = await self._storage.create_index(
                user, index, config, [hooks.event(hooks.INDEX, identity, name, action="created")])
        except RecordExists:
            raise AlreadyExists(f"index '{name}' exists") from None
        except RecordMissing:
            raise NotFound(f"no user '{user}'") from None
        self._audit.record(audit.created_index(identity, name, config))
        return Written(serial, config)

    async def modify_index(self, identity: Identity, user: str, index: str,
                           body: Any | Callable[[Mapping[str, Any]], Any],
                           error_on_noop: bool = False,
                           event: Mapping[str, Any] | None = None) -> Written:
        """PATCH ``body``, or ``body(current config)``'s (computed from the config each
        attempt reads, so a change made meanwhile is never lost). Hooks hear an ``index``
        event, or ``event`` (``{"kind": ..., "project": ...}``: a block, an unblock)."""
        name = f"{user}/{index}"

        async def attempt() -> Written:
            record = await self._index(user, index)
            if not self._policy.may_manage_index(identity, user):
                raise Forbidden(f"no permission to modify index {name}")
            require_scope(identity, INDEX_MODIFY, name)
            current = record.config.to_json()
            patch = body(current) if callable(body) else body
            config = idx.patch_config(name, current, patch, await self._all_configs())
            if not callable(body):  # (a client's PATCH; +block and +unblock pass a function)
                _check_blocks_kept(config, current)
            await self._check_readers(config, record.config.acl_read)
            if config == record.config.to_json():
                if error_on_noop:
                    raise InvalidInput("The requested modifications resulted in no changes")
                return Written(None, config)
            told = hooks.event(hooks.INDEX, identity, name, action="modified") if event is None \
                else hooks.event(identity=identity, index=name, **event)
            serial = await self._update_index(user, index, config, record.serial, told)
            self._audit.record(audit.modified_index(identity, name, record.config, config))
            return Written(serial, config)
        return await retrying(attempt, _busy(name))

    async def _check_readers(self, config: Mapping[str, Any], before: Sequence[str]) -> None:
        """The users ``acl_read`` newly names exist (``:groups`` may be any: they come
        from LDAP; a user named before and deleted since does not block other changes)."""
        added = [p for p in config.get("acl_read") or () if p not in before]
        if ":" in added:
            raise InvalidInput("acl_read: ':' alone names no group")
        unknown = [p for p in added if not p.startswith(":")
                   and (not can_be_stored(p) or await self._storage.get_user(p) is None)]
        if unknown:
            raise InvalidInput(f"acl_read names unknown users: {', '.join(unknown)}")

    async def _update_index(self, user: str, index: str, config: Mapping[str, Any],
                            expect_serial: int, event: HookEvent) -> int:
        try:
            return await self._storage.update_index(user, index, config, expect_serial, [event])
        except RecordMissing:
            raise NotFound(f"The stage {user}/{index} could not be found.") from None

    async def project_config(self, user: str, index: str, project: str) -> dict[str, Any]:
        """devpi 7's configuration of one project (``inheritance_rules``), read off the
        stage's whitelist; ``{}`` when nothing is set."""
        return idx.project_config((await self._index(user, index)).config.to_json(), project)

    async def inheritance_info(self, user: str, index: str, project: str) -> dict[str, Any]:
        """devpi 7's ``inheritance_info`` of a project (model/inheritance_info.py)."""
        return await inheritance_info(self._storage, user, index, normalize_project(project))

    async def modify_project_config(self, identity: Identity, user: str, index: str,
                                    project: str, body: Any) -> Written:
        """PATCH of a project's devpi 7 configuration: kept as the stage's whitelist."""
        name = f"{user}/{index}"

        async def attempt() -> Written:
            record = await self._index(user, index)
            if not self._policy.may_manage_index(identity, user):
                raise Forbidden(f"no permission to modify index {name}")
            require_scope(identity, INDEX_MODIFY, name)
            config = idx.patch_project_rules(record.config.to_json(), project, body)
            if config == record.config.to_json():
                return Written(None, idx.project_config(config, project))
            serial = await self._update_index(user, index, config, record.serial,
                                              hooks.event(hooks.INDEX, identity, name, project=project,
                                                          action="modified"))
            self._audit.record(audit.modified_index(identity, name, record.config, config,
                                                   project=project))
            return Written(serial, idx.project_config(config, project))
        return await retrying(attempt, _busy(name))

    async def delete_index(self, identity: Identity, user: str, index: str) -> Written:
        name = f"{user}/{index}"

        async def attempt() -> Written:
            record = await self._index(user, index)
            if not self._policy.may_manage_index(identity, user):
                raise Forbidden(f"no permission to delete index {name}")
            require_scope(identity, INDEX_DELETE, name)
            if not record.config.volatile:
                raise Forbidden(f"index {name} non-volatile, cannot delete")
            try:
                serial = await self._storage.delete_index(
                    user, index, record.serial, [hooks.event(hooks.INDEX, identity, name, action="deleted")])
            except RecordMissing:
                raise NotFound(f"The stage {name} could not be found.") from None
            self._audit.record(audit.by(identity, audit.INDEX_DELETED, name))
            return Written(serial, None, f"index {name} deleted")
        return await retrying(attempt, _busy(name))


def _is_root(identity: Identity) -> bool:
    return identity.username == ROOT


def _busy(name: str) -> str:
    return f"{name} is being changed by many requests at once, try again"


def _check_blocks_kept(config: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Blocks (who, when, why) are set through +block and +unblock only: a client's
    index config may carry them back unchanged (devpi-client sends what it read)."""
    if (config.get(BLOCKS_KEY) or []) != (current.get(BLOCKS_KEY) or []):
        raise InvalidInput(f"{BLOCKS_KEY}: set through +block and +unblock, not in the index config")
