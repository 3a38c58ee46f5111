"""The shell's connection to its supervisor: the API's streams into the model, on asyncio.

One session is: the container list, then at once the event stream, a poll of the list, one
stats stream per running container and the log stream of the pane's target.  Any transport
failure ends the session; the feed says so in one status line and starts a new session
after a backoff (0.2 s doubling to 2 s), so a restarted supervisor brings the table back by
itself.  Every request has a timeout; streams have none (they may be quiet for hours), but a
vanished supervisor closes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from logging_bus.record import LogLine
from supervisor.client import AsyncClient
from supervisor.errors import ApiError, SupervisorError
from supervisor.protocol import ContainerSummary, Event, StatsView
from supervisor.tui.model import Model

POLL_SECONDS = 2.0  # the list is also refreshed after each burst of events
LOG_TAIL = 200
LOG_PACE = 0.1  # the log stream is read in batches: 10 wake-ups a second, however chatty
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 2.0  # a refused connect costs microseconds


class SessionLost(SupervisorError):
    """A stream the session needs ended: the supervisor went away (or is going)."""


class Feed:
    def __init__(self, model: Model, connect: Callable[[], AsyncClient],
                 changed: Callable[[], None], *, timeout: float = 5.0) -> None:
        self.model = model
        self._connect = connect
        self._changed = changed
        self.timeout = timeout
        self._refresh = asyncio.Event()
        self._retarget = asyncio.Event()
        self.sessions = 0  # sessions started, for tests
        self._lost = False

    # -- for the app ----------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the container list soon (after a command, an event)."""
        self._refresh.set()

    def retarget(self) -> None:
        """The log pane's target changed: restart its stream."""
        self._retarget.set()

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Sessions until cancelled."""
        delay = BACKOFF_FIRST
        while True:
            started = time.monotonic()
            try:
                await self._session()
                error: str = "the supervisor closed the connection"
            except* (SupervisorError, msgspec.MsgspecError) as group:
                error = _first_line(group)
            self._lost = True
            self.model.connected = False
            if time.monotonic() - started > 10:
                delay = BACKOFF_FIRST  # it was up a while: retry promptly
            self.model.say(f"offline, retrying in {delay:.1f}s: {error}", error=True)
            self._changed()
            await asyncio.sleep(delay)
            delay = min(BACKOFF_MAX, delay * 2)

    async def _session(self) -> None:
        async with self._connect() as client:
            await self._load(client)
            self.sessions += 1
            self.model.connected = True
            if self._lost:
                self.model.say(f"connected to the supervisor of project {self.model.project}")
                self.model.logs.add_note("connected to the supervisor")
            self._changed()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._events(client))
                tasks.create_task(self._poll(client))
                tasks.create_task(self._stats(client))
                tasks.create_task(self._logs(client))

    async def _load(self, client: AsyncClient) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                rows = await client.get("/containers/json", all=1)
        except TimeoutError:
            raise SessionLost(f"GET /containers/json: no answer from the supervisor within "
                              f"{self.timeout:g} s") from None
        self.model.set_rows(msgspec.convert(rows, type=list[ContainerSummary]))
        self._changed()

    async def _poll(self, client: AsyncClient) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self._refresh.wait()
                await asyncio.sleep(0.1)  # one read for a burst of events
            self._refresh.clear()
            await self._load(client)

    async def _events(self, client: AsyncClient) -> None:
        async for line in client.lines("/events", since=f"{time.time():.3f}"):
            if not line.strip():
                continue
            self.model.add_event(msgspec.json.decode(line, type=Event))
            self._refresh.set()
            self._changed()
        raise SessionLost("the supervisor ended the event stream")

    async def _stats(self, client: AsyncClient) -> None:
        """One stream per running container; a stream ends when its container stops, and
        is opened again when the list shows it running."""
        streams: dict[str, asyncio.Task[None]] = {}
        try:
            while True:
                for name, row in self.model.rows.items():
                    task = streams.get(name)
                    if row.state.status == "running" and (task is None or task.done()):
                        streams[name] = asyncio.create_task(self._stats_of(client, name))
                for name in [n for n in streams if n not in self.model.rows]:
                    streams.pop(name).cancel()
                await asyncio.sleep(1.0)
        finally:
            for task in streams.values():
                task.cancel()
            await asyncio.gather(*streams.values(), return_exceptions=True)

    async def _stats_of(self, client: AsyncClient, name: str) -> None:
        with contextlib.suppress(SupervisorError):  # gone, or stopped: the list tells
            async for line in client.lines(f"/containers/{name}/stats"):
                if line.strip():
                    self.model.add_stats(msgspec.json.decode(line, type=StatsView))
                    self._changed()

    async def _logs(self, client: AsyncClient) -> None:
        while True:
            self._retarget.clear()
            follow = asyncio.create_task(self._follow(client, self.model.target))
            moved = asyncio.create_task(self._retarget.wait())
            try:
                done, _ = await asyncio.wait({follow, moved},
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:  # also when the session ends: no stream outlives it
                follow.cancel()
                moved.cancel()
                await asyncio.gather(follow, moved, return_exceptions=True)
            if follow in done and not follow.cancelled():
                error = follow.exception()
                if error is not None:
                    raise error  # a transport failure ends the session
                if moved not in done:  # the stream ended by itself: wait for a move
                    await self._retarget.wait()

    async def _follow(self, client: AsyncClient, target: str | None) -> None:
        logs = self.model.logs
        query: dict[str, Any] = {"follow": 1}
        if logs.last_seq:  # a new session: from where the pane is, without repeats
            query["since"] = f"{logs.last_time - 1:.3f}"
        else:
            query["tail"] = LOG_TAIL
        path = "/logs" if target is None else f"/containers/{target}/logs"
        try:
            async for chunk in _lines(client.lines(path, pace=LOG_PACE, **query)):
                if logs.add_log(msgspec.json.decode(chunk, type=LogLine)):
                    self._changed()
        except ApiError as e:  # no such container (any more): back to all
            self.model.say(f"logs of {target}: {e}; following all", error=True)
            self.model.follow(None)
            self._retarget.set()
            self._changed()


async def _lines(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for line in stream:
        if line.strip():
            yield line


def _first_line(group: BaseExceptionGroup[Exception]) -> str:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_line(exc)
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return "the supervisor went away"
