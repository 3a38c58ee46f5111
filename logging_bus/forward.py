"""Forwarders: one task per output, reading the store by cursor and delivering through a sink.

    store ──reader (cursor)──> filters (Pipeline) ──events──> sink.send ──> save cursor

At-least-once: the cursor is saved (written, fsync'ed, renamed into place) only after the
batch before it was delivered, so a forwarder stopped at any point (kill -9 included) resumes
at or before the first line it had not delivered.  It may send a line twice, never skip one.
A line held by a multiline filter keeps the saved cursor at or before it.

A receiver that is down costs only this output: the batch is retried with exponential
backoff (0.5 s doubling, capped by the output's ``retry_max``), the store keeps every line
meanwhile (retention permitting), and the reader holds its place.  A receiver that refuses a
batch for good (``SinkRejected``) is reported and the batch is skipped.  A sink that raises
something unexpected is reported and retried the same way, so no output can end the
supervisor.

    fw = Forwarder(store, "central", spec, sink, Pipeline(...), Path(".../central.cursor"),
                   notice=print)
    nursery.start_soon(fw.run)    # ends when the store closes; resume with a new Forwarder
    await fw.drain()              # before shutdown: deliver what is stored (time-bound it)
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import msgspec
import trio

from logging_bus.errors import LogBusError
from logging_bus.filters import Event, Pipeline
from logging_bus.reader import Reader
from logging_bus.sinks import PayloadTooLarge, Sink, SinkError, SinkRejected, open_sink
from logging_bus.specs import FilterSpec, OutputSpec
from logging_bus.store import LogStore

FIRST_DELAY = 0.5


class SavedCursor(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    cursor: int  # the first seq not yet delivered


def load_cursor(path: Path) -> int | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=SavedCursor).cursor
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError):
        return None  # unreadable: the caller starts as a new output and says so


def save_cursor(path: Path, cursor: int) -> None:
    """Atomically and durably: a crash leaves the old cursor or the new one, never neither."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, msgspec.json.encode(SavedCursor(cursor=cursor)) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Forwarder:
    """One output: its reader, its filters, its sink and its saved cursor."""

    def __init__(self, store: LogStore, name: str, spec: OutputSpec, sink: Sink,
                 pipeline: Pipeline, cursor_file: Path, *, notice: Callable[[str], None],
                 clock: Callable[[], float] = time.time, first_delay: float = FIRST_DELAY
                 ) -> None:
        self.store = store
        self.name = name
        self.spec = spec
        self.sink = sink
        self.pipeline = pipeline
        self.cursor_file = cursor_file
        self.notice = notice
        self.clock = clock
        self.first_delay = first_delay
        self.cursor = 0  # saved: every seq below it was delivered (or filtered out)
        self.delivered = 0  # events sent since start, for status and tests
        self.failing: str | None = None  # the last error while a batch is being retried
        self._wakeup = trio.Event()
        self._progress = trio.Event()
        self._draining = False
        self._save_error: str | None = None

    def _start_cursor(self) -> int:
        store, where = self.store, f"output {self.name}"
        saved = load_cursor(self.cursor_file)
        if saved is None and self.cursor_file.exists():
            self.notice(f"{where}: {self.cursor_file}: unreadable; starting anew")
        if saved is not None and saved > store.last_seq + 1:
            self.notice(f"{where}: saved cursor {saved} is past the log store's end "
                        f"({store.last_seq}); the store was reset, starting at its beginning")
            saved = None
        if saved is None:
            return store.first_seq if self.spec.start == "beginning" else store.last_seq + 1
        if saved < store.first_seq:
            self.notice(f"{where}: lines {saved}-{store.first_seq - 1} were removed by "
                        f"retention before they were delivered")
        return max(saved, store.first_seq)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Deliver from the saved cursor on, forever; returns when the store closes."""
        store = self.store
        start = self._start_cursor()
        await self._save(start)
        token = trio.lowlevel.current_trio_token()
        scheduled = False

        def fire() -> None:
            nonlocal scheduled
            scheduled = False
            self._wakeup.set()

        def wake(_last_seq: int) -> None:  # may run in the writer's thread
            nonlocal scheduled
            if not scheduled:
                scheduled = True
                with contextlib.suppress(trio.RunFinishedError):
                    token.run_sync_soon(fire)

        containers = set(self.spec.containers) or None
        try:
            with store.reader(start, containers=containers) as reader:
                remove = store.on_append(wake)
                task_status.started()
                try:
                    await self._loop(reader)
                finally:
                    remove()
        finally:
            with trio.move_on_after(5) as scope:
                scope.shield = True
                await self.sink.aclose()

    async def _loop(self, reader: Reader) -> None:
        store, pipeline, batch = self.store, self.pipeline, self.spec.batch
        while True:
            self._wakeup = trio.Event()  # before reading: an append after this sets it
            closed = store.closed
            try:
                records = list(reader.records(limit=batch))
            except (OSError, LogBusError) as e:  # an output never ends the stack: said,
                error = f"output {self.name}: reading the log store: {e}"  # and retried
                if error != self.failing:
                    self.notice(error)
                self.failing = error
                await trio.sleep(min(self.spec.retry_max, 5.0))
                continue
            events = pipeline.feed(records)
            if len(records) < batch:  # caught up: held multiline events may be due
                events += pipeline.flush(None if self._draining else self.clock())
            if events:
                await self._deliver(events)
            held = pipeline.held_from()
            await self._save(reader.cursor if held is None else min(reader.cursor, held))
            if len(records) == batch:
                await trio.lowlevel.checkpoint()
                continue
            if closed:
                return
            deadline = pipeline.deadline()
            timeout = math.inf if deadline is None else max(deadline - self.clock(), 0)
            with trio.move_on_after(timeout):
                await self._wakeup.wait()

    async def _deliver(self, events: list[Event]) -> None:
        if len(events) > 1:
            try:
                await self._deliver_one(events, split=True)
                return
            except PayloadTooLarge:  # too big for the receiver: halves, each delivered
                half = len(events) // 2
                await self._deliver(events[:half])
                await self._deliver(events[half:])
                return
        await self._deliver_one(events, split=False)

    async def _deliver_one(self, events: list[Event], *, split: bool) -> None:
        """Until delivered (backoff between tries) or rejected; with `split`, a 413 goes
        to the caller, which sends halves."""
        delay, failures = self.first_delay, 0
        while True:
            try:
                await self.sink.send(events)
            except PayloadTooLarge as e:
                if split:
                    raise
                self.notice(f"output {self.name}: {e}; a line too large for the receiver "
                            "skipped")
                return
            except SinkRejected as e:
                self.notice(f"output {self.name}: {e}; {len(events)} lines skipped")
                return
            except SinkError as e:
                error = str(e)
            except Exception as e:  # a sink's bug: reported and retried, never fatal
                error = f"{type(e).__name__}: {e}"
            else:
                if failures:
                    self.notice(f"output {self.name}: delivering again after {failures} "
                                f"failed attempts")
                self.failing = None
                self.delivered += len(events)
                return
            failures += 1
            if error != self.failing:
                self.notice(f"output {self.name}: {error}; retrying (backoff up to "
                            f"{self.spec.retry_max:g}s)")
            self.failing = error
            await trio.sleep(delay)
            delay = min(delay * 2, self.spec.retry_max)

    async def _save(self, cursor: int) -> None:
        if cursor == self.cursor:
            return
        try:
            await trio.to_thread.run_sync(save_cursor, self.cursor_file, cursor)
        except OSError as e:  # the next batch tries again; a restart repeats, never skips
            error = f"output {self.name}: {self.cursor_file}: {e.strerror or e}"
            if error != self._save_error:  # said once, not once a batch
                self.notice(error)
            self._save_error = error
            return
        self._save_error = None
        self.cursor = cursor
        self._progress.set()
        self._progress = trio.Event()

    async def drain(self) -> None:
        """Return once every line stored now was delivered, held multiline events included
        (before a shutdown; time-bound it: a receiver may be down)."""
        self._draining = True
        self._wakeup.set()
        target = self.store.last_seq + 1
        while self.cursor < target:
            await self._progress.wait()


def open_forwarders(store: LogStore, outputs: Mapping[str, OutputSpec], *,
                    filters: Mapping[str, Sequence[FilterSpec]],
                    common: Sequence[FilterSpec], project: str, directory: Path,
                    notice: Callable[[str], None]) -> list[Forwarder]:
    """A forwarder per output, each with its own filters' state and its cursor file
    ``directory/NAME.cursor``.  Start each one's ``run`` in the owner's nursery."""
    return [Forwarder(store, name, spec, open_sink(spec, project=project, notice=notice,
                                                   store_id=store.id),
                      Pipeline(filters, common), directory / f"{name}.cursor", notice=notice)
            for name, spec in outputs.items()]
