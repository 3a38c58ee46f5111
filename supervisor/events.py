"""The event bus: every state change, with a timestamp, a bounded history and subscribers.

Publishing never blocks: a subscriber whose buffer is full is dropped (its stream ends), so a
slow `events` client can never stall a container's restart loop.
"""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncIterator, Callable

import trio

from supervisor.protocol import Event

HISTORY = 2048
SUBSCRIBER_BUFFER = 1024


class EventBus:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seq = 0
        self.history: collections.deque[Event] = collections.deque(maxlen=HISTORY)
        self._subscribers: set[trio.MemorySendChannel[Event]] = set()
        self._hooks: list[Callable[[Event], None]] = []

    def publish(self, action: str, container: str, **attributes: object) -> Event:
        self._seq += 1
        event = Event(seq=self._seq, time=self._clock(), action=action, container=container,
                      attributes={k: str(v) for k, v in attributes.items() if v is not None})
        self.history.append(event)
        for hook in self._hooks:
            hook(event)
        for send in list(self._subscribers):
            try:
                send.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(send)
                send.close()
        return event

    def on_event(self, hook: Callable[[Event], None]) -> None:
        """A synchronous observer (the foreground printer, tests)."""
        self._hooks.append(hook)

    async def subscribe(self, since: float | None = None,
                        until: float | None = None) -> AsyncIterator[Event]:
        """History from `since` (Unix seconds), then live events; ends at `until`."""
        send, receive = trio.open_memory_channel[Event](SUBSCRIBER_BUFFER)
        backlog = [e for e in self.history if since is not None and e.time >= since]
        self._subscribers.add(send)
        try:
            for event in backlog:
                if until is not None and event.time > until:
                    return
                yield event
            async with receive:
                with trio.move_on_at(_deadline(until)):
                    async for event in receive:
                        if backlog and event.seq <= backlog[-1].seq:
                            continue
                        yield event
        finally:
            self._subscribers.discard(send)
            send.close()


def _deadline(until: float | None) -> float:
    if until is None:
        return float("inf")
    return trio.current_time() + max(0.0, until - time.time())
