"""Process-level kernel calls the supervisor itself makes (sync, no trio).

Everything that unshares or pivots happens in the fork server (`init.py`), never here: those
calls act on one thread, and the supervisor has trio's worker threads.
"""

from __future__ import annotations

import ctypes
import os

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]


def set_child_subreaper() -> None:
    """Orphaned descendants (every container's PID 1, after the fork server's intermediate
    exits) are reparented to this process, so it can wait on them itself: no per-container
    waiter process (kernel-recipes §2)."""
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(e)}")


def is_child_subreaper() -> bool:
    value = ctypes.c_int(0)
    _libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.addressof(value), 0, 0, 0)
    return bool(value.value)
