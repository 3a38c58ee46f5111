"""Following the store live: history, then new records as they are appended.

``follow`` is a loop over one ``Reader``: drain what is stored, wait for the store's
``on_append`` hook, drain again.  The reader's cursor is the only state, so there is no gap
and no duplicate between history and live, and nothing is buffered per follower: a slow
follower just reads later, it never makes the writer wait or grow.

The store is synchronous and knows nothing of trio; its hook may run in the trio thread or in
a worker thread, so it wakes us through ``TrioToken.run_sync_soon``, coalesced to one pending
wake per follower.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import trio

from logging_bus.record import Record
from logging_bus.store import LogStore


async def follow(store: LogStore, start_seq: int, *, containers: set[str] | None = None,
                 sources: set[str] | None = None, join: bool = True,
                 batch: int = 4096) -> AsyncGenerator[Record, None]:
    """Every record from ``start_seq`` on, waiting for new ones; ends when the store closes.

    Resume a follow that ended (the store was reopened, the client reconnected) from the
    last record's ``seq + 1``.  Between batches of ``batch`` records it passes a checkpoint,
    so a follower catching up on a big history does not starve the other tasks.  Use it as
    ``async with contextlib.aclosing(follow(...)) as records`` so the file it holds is
    closed when the consumer stops early.
    """
    token = trio.lowlevel.current_trio_token()
    current = trio.Event()
    scheduled = False

    def fire() -> None:
        nonlocal scheduled
        scheduled = False
        current.set()

    def wake(_last_seq: int) -> None:
        nonlocal scheduled
        if not scheduled:
            scheduled = True
            try:
                token.run_sync_soon(fire)
            except trio.RunFinishedError:
                pass

    with store.reader(start_seq, containers=containers, sources=sources, join=join) as reader:
        remove = store.on_append(wake)
        try:
            while True:
                # A fresh event *before* reading: whatever is appended after this point
                # either is read below or sets this event.
                current = trio.Event()
                closed = store.closed
                got = 0
                for record in reader.records(limit=batch):
                    got += 1
                    yield record
                if got == batch:
                    await trio.lowlevel.checkpoint()
                    continue
                if closed:
                    return
                await current.wait()
        finally:
            remove()
