"""Response bodies sent with os.sendfile: file pages go from the page cache to the
client's socket without passing through Python.

twisted.web writes through the transport's buffer, which sendfile must not overtake.
So the response headers go out the normal way, and the body follows only once the
transport has sent everything it holds: we mark the transport as having paused its
producer (the HTTPChannel, which forwards to us), and the transport resumes it as
soon as its buffer is empty. From then on each step sends what the socket takes; when
it is full, the same mark and ``startWriting`` make the reactor wake us when the socket
is writable again. Only plain TCP and UNIX transports qualify (TLS needs the bytes).

The sendfile calls themselves run on a thread: reading file pages not yet in memory may
wait for the disk, and the reactor never does (invariant 3). The socket is non-blocking;
a step waits at most WAIT_MS for it to drain, so a slow client does not hold a thread. They use a duplicate of the socket's
descriptor, so a connection closed meanwhile can never pass its number to another.
"""

from __future__ import annotations

import errno
import os
import select
from collections.abc import Callable
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from zope.interface import implementer

from devpi_twisted.storage.blobs import BlobMissing, BlobReadStopped

# One sendfile call moves at most this much; the socket's buffer usually takes less.
STEP = 16 << 20
# How long a step waits for a full socket to drain before handing back to the reactor.
WAIT_MS = 20
_CLIENT_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)


def transport_of(request: IRequest) -> FileDescriptor | None:
    """The request's socket transport, when the response body can be sent by sendfile."""
    channel = getattr(request, "channel", None)
    transport = getattr(channel, "transport", None)
    if isinstance(transport, FileDescriptor) and hasattr(transport, "socket"):
        return transport
    return None


def _send_some(sock_fd: int, file_fd: int, position: int, end: int) -> int:
    """sendfile until the range is sent, or the socket stays full for WAIT_MS; returns
    the new position. A client that reads as fast as we send is served in one step;
    a slow one gives the thread back and is resumed by the reactor."""
    poller = None
    while position < end:
        try:
            sent = os.sendfile(sock_fd, file_fd, position, min(end - position, STEP))
        except BlockingIOError:
            if poller is None:
                poller = select.poll()
                poller.register(sock_fd, select.POLLOUT)
            if not poller.poll(WAIT_MS):
                return position
            continue
        if sent == 0:
            raise BlobMissing(f"file ended at byte {position}, before {end}")
        position += sent
    return position


@implementer(IPushProducer)
class SendfileBody:
    """Sends bytes ``[start, end)`` of the open file ``fd`` as the body of ``request``,
    whose headers (with Content-Length) are set. ``run`` runs a blocking call on a thread
    and returns a Deferred of its result."""

    def __init__(self, request: Any, transport: FileDescriptor, fd: int, start: int, end: int,
                 run: Callable[..., Deferred[Any]]) -> None:
        self._request = request
        self._transport = transport
        self._fd = fd
        self._socket_fd = -1
        self._position = start
        self._end = end
        self._run = run
        self._stepping = False
        self._stopped = False
        self._done: Deferred[int] = Deferred()
        self._start = start

    def send(self) -> Deferred[int]:
        """Send the headers, then the body; fires with the bytes sent, or fails with
        BlobReadStopped if the client went away (the producer stays registered then)."""
        self._socket_fd = os.dup(self._transport.fileno())
        self._request.registerProducer(self, True)
        self._request.write(b"")  # the headers, into the transport's buffer
        self._wait_for_socket()
        return self._done

    def _wait_for_socket(self) -> None:
        if self._transport.disconnected:
            self._stopped = True
            self._finish()
            return
        # The transport calls its producer's resumeProducing once its buffer is empty
        # and the socket writable again, if it believes it paused that producer.
        self._transport.producerPaused = True
        self._transport.startWriting()

    # -- IPushProducer ---------------------------------------------------------------

    def resumeProducing(self) -> None:
        if self._stepping or self._stopped or self._done.called:
            return
        self._stepping = True
        self._run(_send_some, self._socket_fd, self._fd, self._position,
                  self._end).addBoth(self._stepped)

    def pauseProducing(self) -> None:
        """Nothing to do: we only send when resumed, and write nothing to the buffer."""

    def stopProducing(self) -> None:
        self._stopped = True
        if not self._stepping:
            self._finish()

    # -- steps -----------------------------------------------------------------------

    def _stepped(self, result: int | Failure) -> None:
        self._stepping = False
        if isinstance(result, Failure):
            if getattr(result.value, "errno", None) not in _CLIENT_GONE:
                self._finish(result)
                return
            self._stopped = True
        else:
            self._request.sentLength += result - self._position
            self._position = result
        if self._stopped or self._position >= self._end:
            self._finish()
        else:
            self._wait_for_socket()

    def _finish(self, failure: Failure | None = None) -> None:
        if self._done.called:
            return
        os.close(self._socket_fd)
        if failure is not None:
            if self._request.channel is not None:
                self._request.unregisterProducer()
            self._done.errback(failure)
        elif self._stopped:
            self._done.errback(BlobReadStopped("the client went away"))
        else:
            self._request.unregisterProducer()
            self._done.callback(self._end - self._start)
