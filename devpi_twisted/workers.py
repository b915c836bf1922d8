"""Worker processes: ``--workers N`` starts N ``--requests-only`` children serving the
main process's listening sockets (inherited file descriptors; the kernel spreads
connections over every process accepting on them). A worker that exits is
started again after a pause; the children stop with the main process.

``worker_command`` makes a worker's command line from the main process's Config: every
option declared ``to_workers`` (options.py), whatever its value came from.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from devpi_twisted.config import Config, config_argv, is_option_variable
from devpi_twisted.options import OPTIONS
from devpi_twisted.reactors import IServerReactor
from devpi_twisted.serverdir import SECRET, StartupError

log = Logger()

RESTART_DELAY = 1.0
STOP_TIMEOUT = 10.0
TWISTD = "from twisted.scripts.twistd import run; run()"


def worker_command(config: Config, environ: Mapping[str, str] = os.environ,
                   ) -> tuple[list[str], dict[str, str]]:
    """Arguments and environment that make a worker serve like this process: the options
    declared ``to_workers``, with this process's values (from its command line, -c file
    or environment alike). Secret ones (the storage settings, maybe a password) travel
    in the environment, not in argv; no other option variable of ``environ`` reaches
    the worker, so its Config is this one's, but for what makes it a worker."""
    secretfile = config.secretfile or config.serverdir / SECRET
    if not secretfile.exists():
        raise StartupError("--workers needs a secret file shared by all processes (--secretfile)")
    config = attrs.evolve(config, secretfile=secretfile)
    shared = [option for option in OPTIONS if option.to_workers]
    args = config_argv(config, [option for option in shared if not option.secret])
    env = {name: value for name, value in environ.items() if not is_option_variable(name)}
    for option in shared:
        text = option.text(getattr(config, option.field or "")) if option.secret else None
        if text is not None:
            env[option.variable] = text
    return args, env


class _Worker(ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, number: int) -> None:
        self.supervisor = supervisor
        self.number = number
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)
        self.supervisor._ended(self, reason)


class WorkerSupervisor(Service):
    """Keeps ``count`` workers running ``args`` (from worker_command) with the environment
    ``env`` (all of it) and the sockets ``sockets`` returns."""

    def __init__(self, reactor: IServerReactor, count: int, args: Sequence[str],
                 env: Mapping[str, str],
                 sockets: Callable[[], list[tuple[int, str]]]) -> None:
        self._reactor = reactor
        self._count = count
        self._args = list(args)
        self._env = dict(env)
        self._sockets = sockets
        self._workers: dict[int, _Worker] = {}

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # twisted's Service is unannotated
        for number in range(self._count):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        if not self.running:
            return
        child_fds: dict[int, str | int] = {0: "w", 1: 1, 2: 2}
        inherited = []
        for offset, (fd, family) in enumerate(self._sockets()):
            child_fds[3 + offset] = fd
            inherited.append(f"{3 + offset}:{family}")
        argv = [sys.executable, "-c", TWISTD, "--nodaemon", "--pidfile=", "devpi", *self._args,
                "--requests-only", "--listen-fds", ",".join(inherited)]
        worker = _Worker(self, number)
        self._workers[number] = worker
        process = self._reactor.spawnProcess(worker, sys.executable, argv, env=self._env,
                                             childFDs=child_fds)
        log.info("Started worker {number} (pid {pid})", number=number, pid=process.pid)

    def _ended(self, worker: _Worker, reason: Failure) -> None:
        if self._workers.get(worker.number) is worker:
            del self._workers[worker.number]
        if self.running:
            log.warn("Worker {number} ended ({reason}); starting it again", number=worker.number,
                     reason=reason.getErrorMessage())
            self._reactor.callLater(RESTART_DELAY, self._spawn, worker.number)

    def pids(self) -> list[int]:
        return [w.transport.pid for w in self._workers.values() if w.transport and w.transport.pid]

    def stopService(self) -> Deferred[Any]:
        super().stopService()  # type: ignore[no-untyped-call]  # twisted's Service is unannotated
        workers = list(self._workers.values())
        for worker in workers:
            _signal(worker, signal.SIGTERM)

        def kill() -> None:
            for worker in workers:
                _signal(worker, signal.SIGKILL)

        timer = self._reactor.callLater(STOP_TIMEOUT, kill)

        def cancel_timer(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        return gatherResults([w.ended for w in workers]).addBoth(cancel_timer)


def _signal(worker: _Worker, sig: int) -> None:
    try:
        if worker.transport is not None:
            worker.transport.signalProcess(sig)
    except Exception:  # already gone
        pass
