"""The errors the log bus shows to people.

    LogBusError              exit 1; str(e) is the whole user-facing line
     ├── StoreError          the store's directory or a segment file cannot be used
     │    └── StoreLocked    another process holds the store (one writer per project)
     └── StoreClosed         an operation on a store after close()

Grammar of a message: ``<where>: <what>[, expected X, got Y]``; ``<where>`` is the store's
directory or a segment's path.  OSError is translated once, in the store, with
``raise ... from exc``.  Damage found in the files (a torn tail, a bad checksum) is not an
error: the store trims or skips it and says so in ``LogStore.notices``.
"""

from __future__ import annotations


class LogBusError(Exception):
    """Root of every error the log bus shows to a user."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return str(self.args[0])


class StoreError(LogBusError):
    """The store's directory or one of its files cannot be read or written."""


class StoreLocked(StoreError):
    """Another process has the store open for writing."""


class StoreClosed(LogBusError):
    """The store was closed; a follower sees this as the end of its stream."""
