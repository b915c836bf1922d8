"""Dispatch of requests to the handlers of the route table (web/routes.py): the Klein
app built from the table (its URL map, its error handlers), and the site's root
resource, which calls the handlers of the table's ``fast`` routes itself (werkzeug's
URL mapping costs about as much as answering a cached page) and hands every other
request to the Klein resource. Both answer errors with the same functions
(web/errors.py)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from klein import Klein
from klein._app import KleinErrorFunction
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request
from werkzeug.exceptions import MethodNotAllowed, NotFound as RouteNotFound

from devpi_twisted.model.errors import DomainError
from devpi_twisted.storage.interface import StorageUnavailable
from devpi_twisted.web import errors
from devpi_twisted.web.deps import HttpRequest
from devpi_twisted.web.routes import MATCHER, NAME, NameConverter, Route, RouteMatch

Handler = Callable[..., Coroutine[Any, Any, bytes]]  # an app's async route method
_log = Logger()


def resolve(routes: Sequence[Route], apps: Mapping[str, object]) -> dict[Route, Handler]:
    """Each route's handler: ``"app.method"`` looked up on the composed apps."""
    handlers: dict[Route, Handler] = {}
    for route in routes:
        app, _, method = route.handler.partition(".")
        handler = getattr(apps[app], method, None)
        if not callable(handler):
            raise LookupError(f"route {route.name}: no handler {route.handler}")
        handlers[route] = handler
    return handlers


def build_klein(handlers: Mapping[Route, Handler]) -> Klein:
    """A Klein app with no global state: one rule per route, the endpoint named after
    its handler, and the error mapping."""
    app = Klein()
    app.url_map.converters[NAME] = NameConverter
    for route, handler in handlers.items():
        app.route(route.pattern, methods=sorted(route.methods), strict_slashes=False,
                  endpoint=route.handler)(handler)
    app.handle_errors(DomainError)(_for_klein(errors.domain_error))
    app.handle_errors(StorageUnavailable)(_for_klein(errors.storage_unavailable))
    app.handle_errors(RouteNotFound, MethodNotAllowed)(_for_klein(errors.no_route))
    return app


def _for_klein(answer: Callable[[HttpRequest, Failure], bytes]) -> KleinErrorFunction:
    """An error answer as Klein's error handler (Klein hands on the site's requests)."""
    def handler(request: IRequest, failure: Failure) -> bytes:
        assert isinstance(request, Request)
        return answer(request, failure)
    return handler


def match_of(request: HttpRequest) -> RouteMatch | None:
    """The route of a request (looked up once, by DevpiSite.getResourceFor)."""
    found: RouteMatch | None = getattr(request, "devpi_match", None)
    if found is None:  # not looked up (a request of another Site), or no route
        found = MATCHER.match_segments(request.method, request.postpath or ())
    return found


class Dispatcher(Resource):
    """The site's root resource: the fast routes' handlers called directly, every
    other request rendered by ``fallback`` (the Klein resource)."""

    isLeaf = True

    def __init__(self, handlers: Mapping[Route, Handler], fallback: IResource) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # untyped in twisted
        self._handlers = {route: h for route, h in handlers.items() if route.fast}
        self._fallback = fallback

    def render(self, request: Request) -> bytes | int:
        refused = errors.unroutable(request)  # Klein would log a traceback for some
        if refused is not None:
            return refused
        found = match_of(request)
        handler = None if found is None else self._handlers.get(found.route)
        if handler is None or found is None:
            rendered: bytes | int = self._fallback.render(request)
            return rendered
        done = Deferred.fromCoroutine(handler(request, *found.args))
        request.notifyFinish().addErrback(lambda _: done.cancel())
        done.addErrback(_failed, request)
        done.addCallback(_respond, request)
        done.addErrback(lambda f: _log.failure("writing a response", f))
        return NOT_DONE_YET


def _failed(failure: Failure, request: HttpRequest) -> bytes | None:
    if request.finished or request.channel is None:
        if not isinstance(failure.value, CancelledError):
            _log.failure("after the response ended", failure)
        return None
    body = errors.error_body(request, failure)
    if body is None:
        request.processingFailed(failure)
    return body


def _respond(body: bytes | None, request: HttpRequest) -> None:
    if body is None or request.finished or request.channel is None:
        return
    if body:
        request.write(body)
    request.finish()
