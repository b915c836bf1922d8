"""Domain errors: a user-readable message and a kind, no HTTP status (web/ maps them)."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a client caused; ``str(e)`` is the message shown to it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    """The request's data is malformed or breaks a rule."""


class NotFound(DomainError):
    """The named user, index, project or file does not exist."""


class AlreadyExists(DomainError):
    """Creating something that is already there."""


class Conflict(DomainError):
    """The change contradicts stored state (e.g. overwriting a non-volatile file)."""


class Forbidden(DomainError):
    """The identity lacks the permission."""


class Unauthenticated(DomainError):
    """Credentials are missing or wrong where they are required; ``challenge``: ask for
    Basic credentials in ``realm``."""

    def __init__(self, message: str, challenge: bool = False, realm: str = "pypi") -> None:
        super().__init__(message)
        self.challenge = challenge
        self.realm = realm


class UnsupportedMedia(DomainError):
    """The request asks for a representation this view does not have."""


class Gone(DomainError):
    """The thing existed but was deleted."""


class TooLarge(DomainError):
    """A request body beyond the accepted size."""


class Unavailable(DomainError):
    """A dependency (database, upstream) cannot answer right now; ``retry_after``: the
    seconds a client should wait, when known."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyAttempts(DomainError):
    """Failed logins for this user or from this client: wait ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamFailed(DomainError):
    """A mirror's upstream failed and nothing cached can stand in (a bad gateway)."""
