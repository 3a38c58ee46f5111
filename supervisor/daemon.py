"""The supervisor process: one project's stack, its API, its signals.

`supervise` runs in the foreground (`up`) or detached (`up -d`, `run -d`: the same code in a
process of its own, started by `spawn_detached`).  Ctrl-C or SIGTERM stops the stack in
reverse dependency order; a second Ctrl-C kills every container at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import trio

from logging_bus.errors import LogBusError
from logging_bus.follow import follow
from logging_bus.forward import Forwarder, open_forwarders
from logging_bus.store import LogStore
from supervisor import config
from supervisor.api import Api
from supervisor.events import EventBus
from supervisor.httpserver import serve_unix
from supervisor.network import open_stack_network
from supervisor.paths import ProjectPaths
from supervisor.printer import LinePrinter
from supervisor.protocol import Event
from supervisor.runtime import Runtime
from supervisor.stack import Stack, StackError, project_lock


async def supervise(stack_cfg: config.Stack, paths: ProjectPaths, *,
                    notice: Callable[[str], None], printer: LinePrinter | None = None,
                    abort_on_container_exit: bool = False, exit_code_from: str | None = None,
                    task_status: trio.TaskStatus[Stack] = trio.TASK_STATUS_IGNORED) -> int:
    """Runs the project until shut down; returns the process's exit code.  With a
    `printer` (foreground `up`), the stack's output is printed from the log store."""
    with project_lock(paths), Runtime() as runtime, \
            _open_store(paths, stack_cfg.stack.logs, notice) as store:
        events = EventBus()
        stack = Stack(stack_cfg, paths, runtime, store, events, notice)
        api = Api(stack)
        result = {"code": 0}
        output = StackOutput(store, printer) if printer is not None else None
        async with open_stack_network(paths, stack_cfg.stack.network) as network, \
                trio.open_nursery() as nursery:
            stack.network = network
            await nursery.start(serve_unix, api.router, str(paths.run / "api.sock"))
            nursery.start_soon(_signals, stack)
            nursery.start_soon(_store_ticker, store)
            forwarders = _forwarders(stack_cfg, paths, store, notice)
            for forwarder in forwarders:
                await nursery.start(forwarder.run)
            if output is not None:
                events.on_event(output.on_event)
                nursery.start_soon(output.run)
            if abort_on_container_exit or exit_code_from:
                events.on_event(_abort_watch(stack, result, exit_code_from))
            await nursery.start(stack.run)
            task_status.started(stack)
            await stack.finished.wait()
            with trio.move_on_after(2):
                await _drain(output, forwarders)
            nursery.cancel_scope.cancel()
        return result["code"]


@contextlib.contextmanager
def _open_store(paths: ProjectPaths, settings: config.StackLogs,
                notice: Callable[[str], None]) -> Iterator[LogStore]:
    """The project's log store; what opening it repaired is said, not fatal."""
    try:
        store = LogStore.open(paths.logs, fsync=settings.fsync, retain_bytes=settings.max_size,
                              retain_seconds=settings.max_age)
    except LogBusError as e:
        raise StackError(f"log store {paths.logs}: {e}") from e
    for line in store.notices:
        notice(f"log store: {line}")
    try:
        yield store
    finally:
        store.close()


def _forwarders(cfg: config.Stack, paths: ProjectPaths, store: LogStore,
                notice: Callable[[str], None]) -> list[Forwarder]:
    """A task per `[stack.logs.outputs.NAME]`; filters are applied on the way out (the store
    keeps the bytes as written); cursors are saved in the state dir's `outputs/NAME.cursor`."""
    logs = cfg.stack.logs
    return open_forwarders(store, logs.outputs, common=logs.filters,
                           filters={n: c.logs.filters for n, c in cfg.containers.items()},
                           project=cfg.project, directory=paths.state / "outputs",
                           notice=notice)


async def _drain(output: StackOutput | None, forwarders: list[Forwarder]) -> None:
    """Before shutdown: print and forward what the store holds (the caller bounds the time:
    a receiver may be down; an output resumes from its saved cursor at the next start)."""
    async with trio.open_nursery() as nursery:
        if output is not None:
            nursery.start_soon(output.drained)
        for forwarder in forwarders:
            nursery.start_soon(forwarder.drain)


async def _store_ticker(store: LogStore) -> None:
    """fsync = "1s" and retention: once a second, whatever the traffic."""
    while True:
        await trio.sleep(1)
        store.sync()
        store.enforce_retention()


class StackOutput:
    """Foreground `up`: `name | line` from the store, in store order, with each container's
    `exited with code N` line printed after its last output line."""

    def __init__(self, store: LogStore, printer: LinePrinter) -> None:
        self.store = store
        self.printer = printer
        self.printed = store.last_seq
        self._progress = trio.Event()
        self._statuses: list[tuple[int, str, str]] = []
        self._status_added = trio.Event()

    def on_event(self, event: Event) -> None:
        if event.action == "create":
            self.printer.add(event.container)
        elif event.action == "die":
            # The container's output was drained and flushed before `die` was published,
            # so its lines are all at or below the store's last seq now.
            self._statuses.append((self.store.last_seq, event.container,
                                   f"{event.container} exited with code "
                                   f"{event.attributes.get('exitCode', '?')}"))
            self._status_added.set()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._lines)
            nursery.start_soon(self._status_lines)

    async def _lines(self) -> None:
        async with contextlib.aclosing(follow(self.store, self.printed + 1)) as records:
            async for record in records:
                self.printer.write(record.container, record.source, record.raw)
                self.printed = record.seq
                self._progress.set()
                self._progress = trio.Event()

    async def _status_lines(self) -> None:
        while True:
            while self._statuses and self._statuses[0][0] <= self.printed:
                _, name, text = self._statuses.pop(0)
                self.printer.status(name, text)
            if self._statuses:
                await self._progress.wait()
            else:
                self._status_added = trio.Event()
                await self._status_added.wait()

    async def drained(self) -> None:
        while self.printed < self.store.last_seq or self._statuses:
            await trio.sleep(0.01)


def _abort_watch(stack: Stack, result: dict[str, int],
                 exit_code_from: str | None) -> Callable[[Event], None]:
    """Compose's --abort-on-container-exit / --exit-code-from."""

    def watch(event: Event) -> None:
        if event.action != "die" or stack.shutting_down:
            return
        if exit_code_from is None or event.container == exit_code_from:
            result["code"] = int(event.attributes.get("exitCode", "0"))
            stack.notice(f"{event.container} exited: aborting on container exit")
            stack.shutdown()

    return watch


async def _signals(stack: Stack) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        count = 0
        async for _sig in signals:
            count += 1
            if count == 1:
                stack.notice("Gracefully stopping... (press Ctrl+C again to force)")
                stack.shutdown()
            else:
                stack.notice("Killing...")
                stack.kill_all()


def spawn_detached(argv: list[str], paths: ProjectPaths) -> subprocess.Popen[bytes]:
    """Starts `supervise _serve ...` in a session of its own; its notices go to a log file
    in the runtime directory (container output goes to the log bus)."""
    paths.run.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = open(paths.run / "supervisor.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen([sys.executable, "-m", "supervisor", *argv],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True,
                                env=os.environ | {"PYTHONUNBUFFERED": "1"})
    finally:
        log.close()
