"""How errors are answered, in one place for the Klein app and the fast dispatch
(web/dispatch.py): domain errors by their status, an unavailable database as 503, no
route as 404, and the 400 for a URL no route can take."""

from __future__ import annotations

from twisted.python.failure import Failure

from devpi_twisted.model.errors import DomainError, Unauthenticated
from devpi_twisted.storage.interface import StorageUnavailable
from devpi_twisted.web import render
from devpi_twisted.web.deps import HttpRequest


def domain_error(request: HttpRequest, failure: Failure) -> bytes:
    error = failure.value
    assert isinstance(error, DomainError)
    if isinstance(error, Unauthenticated) and error.challenge and \
            getattr(request, "devpi_bad_credentials", False):  # (web/helpers.py)
        error = Unauthenticated("the credentials sent are not valid (wrong user or password, "
                                f"or an expired login token): {error.message}",
                                challenge=True, realm=error.realm)
    return render.domain_error(request, error)


def storage_unavailable(request: HttpRequest, failure: Failure) -> bytes:
    request.setHeader(b"Retry-After", b"5")
    return render.error(request, 503, "the database is unavailable right now, try again shortly")


def no_route(request: HttpRequest, failure: Failure) -> bytes:
    return render.error(request, 404, "The resource could not be found.")


def error_body(request: HttpRequest, failure: Failure) -> bytes | None:
    """The answer to an error of a handler called without Klein, as Klein's error
    handlers give it; None for anything else (a 500 from twisted.web)."""
    if isinstance(failure.value, DomainError):
        return domain_error(request, failure)
    if isinstance(failure.value, StorageUnavailable):
        return storage_unavailable(request, failure)
    return None


def unroutable(request: HttpRequest) -> bytes | None:
    """The 400 for a URL no route can take, None for others: a path or host that is
    not UTF-8 (Klein logs a traceback for it), a path with NUL (nothing stored has
    one, and PostgreSQL cannot even be asked for it)."""
    path = b"/".join([*(request.prepath or ()), *(request.postpath or ())])
    try:
        path.decode("utf-8")
        request.getRequestHostname().decode("utf-8")
    except UnicodeDecodeError:
        return render.error(request, 400, "Bad request: the URL is not valid UTF-8")
    if b"\x00" in path:
        return render.error(request, 400, "Bad request: the URL holds a NUL character")
    return None
