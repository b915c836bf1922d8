"""Response bodies sent with os.sendfile: file pages go from the page cache to the
client's socket without passing through Python.

twisted.web writes through the transport's buffer, which sendfile must not overtake.
So the response headers go out the normal way, and the body follows only once the
transport has sent everything it holds: we mark the transport as having paused its
producer (the HTTPChannel, which forwards to us), and the transport resumes it as
soon as its buffer is empty. From then on each step sends what the socket takes, on
a duplicate of the socket's descriptor; when the socket is full, that duplicate is
registered with the reactor, which wakes us when it is writable again. Only plain TCP
and UNIX transports qualify (TLS needs the bytes).

The reactor never waits for the disk (invariant 3): it sends a WINDOW of the file only
if cachestat(2) finds all its pages in the page cache, so sendfile cannot block there. A
window that is not in memory is sent by a thread, which goes on to the end, waiting at
most WAIT_MS for the non-blocking socket to drain, so a slow client holds no thread.
As the duplicate stays open until we are done, a connection closed meanwhile can never
pass its descriptor's number on to another.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import select
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, IReactorTime, IWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from devpi_twisted.storage.blobs import BlobMissing, BlobReadStopped
from devpi_twisted.web.deps import HttpRequest

# One sendfile call moves at most this much; the socket's buffer usually takes less.
STEP = 16 << 20
# How long a step waits for a full socket to drain before handing back to the reactor.
WAIT_MS = 20
# The reactor sends at most this much per wake-up, after cachestat(2) found it in memory.
WINDOW = 2 << 20
# The socket's send buffer is left to the kernel's autotuning: a fixed 4 MiB one (tried)
# made 20 MB downloads over loopback ~15% slower here (1195 vs 1424 MB/s, 4 clients).
# The body is sent corked (TCP_CORK, as nginx's tcp_nopush): only full segments leave
# until the end. 20 MB downloads, 4 clients, mean of 6-9 runs: 1229 MB/s uncorked, 1323
# and 1410 MB/s corked (two batches; runs here vary by +-20%).
_CLIENT_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)
_FULL, _WINDOW, _COLD = "full", "window", "cold"  # how a step from memory ended


def transport_of(request: HttpRequest) -> FileDescriptor | None:
    """The request's socket transport, when the response body can be sent by sendfile."""
    channel = getattr(request, "channel", None)
    transport = getattr(channel, "transport", None)
    if isinstance(transport, FileDescriptor) and hasattr(transport, "socket"):
        return transport
    return None


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _CacheStat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


_CACHESTAT = 451  # the syscall's number on every Linux architecture (Linux 6.5+)


def _load_syscall() -> Any:
    """libc's syscall(2) if cachestat(2) works here, else None (then every step that
    sends file bytes runs on a thread)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        syscall = libc.syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    probe = _CacheStat()
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        ok = syscall(_CACHESTAT, fd, ctypes.byref(_Range(0, 1)), ctypes.byref(probe), 0) == 0
    finally:
        os.close(fd)
    return syscall if ok else None


_SYSCALL = _load_syscall()
_PAGE = mmap.PAGESIZE


def in_memory(fd: int, start: int, end: int) -> bool:
    """Whether bytes ``[start, end)`` of the file are all in the page cache, so that
    sending them cannot wait for the disk (cachestat(2); False where it is missing)."""
    if end <= start:
        return True
    if _SYSCALL is None:
        return False
    found = _CacheStat()
    if _SYSCALL(_CACHESTAT, fd, ctypes.byref(_Range(start, end - start)), ctypes.byref(found), 0):
        return False
    return bool(found.nr_cache >= (end - 1) // _PAGE - start // _PAGE + 1)


def _send_some(sock_fd: int, file_fd: int, position: int, end: int, wait_ms: int = 0) -> int:
    """sendfile until the range is sent, or the socket is full (with ``wait_ms``: until it
    stays full that long); returns the new position. On a thread, a client that reads as
    fast as we send is served in one step; a slow one gives the thread back."""
    poller = None
    while position < end:
        try:
            sent = os.sendfile(sock_fd, file_fd, position, min(end - position, STEP))
        except BlockingIOError:
            if not wait_ms:
                return position
            if poller is None:
                poller = select.poll()
                poller.register(sock_fd, select.POLLOUT)
            if not poller.poll(wait_ms):
                return position
            continue
        if sent == 0:
            raise BlobMissing(f"file ended at byte {position}, before {end}")
        position += sent
    return position


@implementer(IPushProducer, IWriteDescriptor)
class SendfileBody:
    """Sends bytes ``[start, end)`` of the open file ``fd`` as the body of ``request``,
    whose headers (with Content-Length) are set. ``run`` runs a blocking call on a thread
    and returns a Deferred of its result.

    A producer to the request (so the channel tells us when the headers are out and
    when the client is gone) and, while the socket is full, a write descriptor of the
    reactor on our duplicate of the socket's descriptor."""

    def __init__(self, request: HttpRequest, transport: FileDescriptor, fd: int, start: int, end: int,
                 run: Callable[..., Deferred[Any]]) -> None:
        self._request = request
        self._transport = transport
        self._reactor = transport.reactor
        self._clock = IReactorTime(transport.reactor)
        self._fd = fd
        self._socket: socket.socket | None = None  # our duplicate of the connection's socket
        self._socket_fd = -1
        self._start = self._position = start
        self._end = end
        self._run = run
        self._started = False   # the headers have left the transport's buffer
        self._watching = False  # registered with the reactor as a writer
        self._stepping = False  # a thread is sending
        self._stopped = False   # the client is gone
        self._done: Deferred[int] = Deferred()

    def send(self) -> Deferred[int]:
        """Send the headers, then the body; fires with the bytes sent, or fails with
        BlobReadStopped if the client went away (the producer stays registered then)."""
        self._socket = socket.socket(fileno=os.dup(self._transport.fileno()))
        self._socket_fd = self._socket.fileno()
        self._request.registerProducer(self, True)
        self._request.write(b"")  # the headers, into the transport's buffer
        # The transport resumes its producer (the channel, which resumes us) once its
        # buffer is empty, if it believes it paused that producer.
        self._transport.producerPaused = True
        self._transport.startWriting()
        return self._done

    # -- IPushProducer (called by the request's channel) ---------------------------------

    def resumeProducing(self) -> None:
        if not self._started and not self._stopped:
            self._started = True
            self._cork(True)
            self._step()

    def pauseProducing(self) -> None:
        """Nothing to do: nothing of ours passes through the transport's buffer."""

    def stopProducing(self) -> None:
        self._stopped = True
        if not self._stepping:
            self._finish()

    # -- IWriteDescriptor (called by the reactor when the socket is writable) ---------

    def fileno(self) -> int:
        return self._socket_fd

    def doWrite(self) -> None:
        self._step()

    def connectionLost(self, reason: Failure) -> None:
        self._watching = False
        self.stopProducing()

    def logPrefix(self) -> str:
        return "sendfile"

    # -- steps -----------------------------------------------------------------------

    def _cork(self, on: bool) -> None:
        if self._socket is not None and self._socket.family in (socket.AF_INET, socket.AF_INET6):
            try:
                self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, int(on))
            except OSError:  # the client is gone
                pass

    def _watch(self, on: bool) -> None:
        if on and not self._watching:
            self._reactor.addWriter(self)
        elif not on and self._watching:
            self._reactor.removeWriter(self)
        self._watching = on

    def _step(self) -> None:
        """Send what the socket takes from memory; wait for it to drain when full, let a
        thread send when the next window is not in memory."""
        if self._stopped or self._stepping or self._done.called:
            return
        try:
            sent = self._send_from_memory()
        except Exception:
            self._stepped(Failure())
            return
        if self._position >= self._end:
            self._finish()
        elif sent == _FULL:
            self._watch(True)
        elif sent == _WINDOW:  # the socket takes more: our next turn, after the others'
            self._watch(False)
            self._clock.callLater(0, self._step)
        else:
            self._watch(False)
            self._stepping = True
            self._run(_send_some, self._socket_fd, self._fd, self._position, self._end,
                      WAIT_MS).addBoth(self._stepped)

    def _send_from_memory(self) -> str:
        """Send up to one WINDOW if its pages are in memory. _FULL: the socket is full;
        _WINDOW: one window sent (then the other clients' turn, as with nginx's
        sendfile_max_chunk); _COLD: the window is not in memory (or nothing was left)."""
        window = min(self._end, self._position + WINDOW)
        if not in_memory(self._fd, self._position, window):
            return _COLD
        self._advance(_send_some(self._socket_fd, self._fd, self._position, window))
        return _WINDOW if self._position == window else _FULL

    def _advance(self, position: int) -> None:
        self._request.sentLength += position - self._position
        self._position = position

    def _stepped(self, result: int | Failure) -> None:
        """A thread's step (or a failed one of ours) ended."""
        self._stepping = False
        if isinstance(result, Failure):
            if getattr(result.value, "errno", None) not in _CLIENT_GONE:
                self._finish(result)
                return
            self._stopped = True
        else:
            self._advance(result)
        if self._stopped or self._position >= self._end:
            self._finish()
        else:
            self._watch(True)

    def _finish(self, failure: Failure | None = None) -> None:
        if self._done.called:
            return
        self._watch(False)
        if self._socket is not None:
            self._cork(False)  # what is left goes out now
            self._socket.close()
            self._socket, self._socket_fd = None, -1
        if failure is None and self._stopped:
            failure = Failure(BlobReadStopped("the client went away"))
        elif self._request.channel is not None:
            self._request.unregisterProducer()
        if failure is None:
            self._done.callback(self._end - self._start)
        else:
            self._done.errback(failure)
