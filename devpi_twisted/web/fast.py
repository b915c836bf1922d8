"""The hottest routes (release files and simple project pages, and uploads) dispatched
without Klein: werkzeug's URL mapping costs about as much as answering a cached
page. The handlers and the error mapping are the Klein app's own; only the matching
differs, and anything this does not recognise goes to the Klein resource unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET

Handler = Callable[..., Awaitable[bytes]]
_log = Logger()


class FastRoutes(Resource):
    """The site's root resource: ``GET|HEAD /{user}/{index}/+f|+e/{path}``,
    ``GET|HEAD /{user}/{index}/+simple/{project}/`` and ``POST|PUSH /{user}/{index}[/]``
    go straight to ``app``'s handlers, every other request to ``fallback`` (the Klein
    resource)."""

    isLeaf = True

    def __init__(self, app: Any, fallback: IResource) -> None:
        super().__init__()
        self._app = app
        self._fallback = fallback

    def _match(self, request: Any) -> tuple[Handler, tuple[str, ...]] | None:
        path = request.postpath
        if len(path) < 2 or path[0][:1] in (b"+", b"") or path[1][:1] in (b"+", b""):
            return None
        if request.method in (b"POST", b"PUSH"):
            if len(path) == 2 or (len(path) == 3 and not path[2]):
                try:
                    return self._app.upload, (path[0].decode(), path[1].decode())
                except UnicodeDecodeError:
                    return None
            return None
        if request.method not in (b"GET", b"HEAD") or len(path) < 4:
            return None
        try:
            if path[2] in (b"+f", b"+e") and all(path[3:]):
                handler = self._app.release_file if path[2] == b"+f" else self._app.external_file
                return handler, (path[0].decode(), path[1].decode(), b"/".join(path[3:]).decode())
            if path[2] == b"+simple" and len(path) == 5 and path[3] and not path[4]:
                return self._app.simple_project, (path[0].decode(), path[1].decode(),
                                                  path[3].decode())
        except UnicodeDecodeError:  # Klein answers these with its 400
            return None
        return None

    def render(self, request: Any) -> Any:
        refused = self._app.unroutable(request)  # Klein would log a traceback for some
        if refused is not None:
            return refused
        route = self._match(request)
        if route is None:
            return self._fallback.render(request)
        handler, args = route
        done = Deferred.fromCoroutine(handler(request, *args))
        request.notifyFinish().addErrback(lambda _: done.cancel())
        done.addErrback(self._failed, request)
        done.addCallback(self._respond, request)
        done.addErrback(lambda f: _log.failure("writing a response", f))
        return NOT_DONE_YET

    def _failed(self, failure: Failure, request: Any) -> bytes | None:
        if request.finished or request.channel is None:
            if not failure.check(CancelledError):
                _log.failure("after the response ended", failure)
            return None
        body = self._app.error_body(request, failure)
        if body is None:
            request.processingFailed(failure)
        return body

    @staticmethod
    def _respond(body: bytes | None, request: Any) -> None:
        if body is None or request.finished or request.channel is None:
            return
        if body:
            request.write(body)
        request.finish()
