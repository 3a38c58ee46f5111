"""nftables through libnftables (ctypes), in the calling thread's network namespace.

No `nft` process: a rule set is applied from the stack's namespace thread (linux/netlink.py),
so it can only ever land in a namespace supervise made (kernel-recipes §5).  Errors come
back as nft's own text.
"""

from __future__ import annotations

import ctypes
import ctypes.util


class NftError(Exception):
    """libnftables refused a rule set; `str()` is its first error line."""


_lib: ctypes.CDLL | None = None


def _library() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            raise NftError(f"libnftables not found ({e}); install nftables") from e
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        _lib = lib
    return _lib


def run(rules: str) -> str:
    """Applies `rules` (nft syntax) atomically; returns nft's output."""
    lib = _library()
    ctx = lib.nft_ctx_new(0)
    if not ctx:
        raise NftError("nft_ctx_new failed")
    try:
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        rc = lib.nft_run_cmd_from_buffer(ctx, rules.encode())
        if rc != 0:
            err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
            first = next((ln for ln in err.splitlines() if ln.strip()), f"error {rc}")
            raise NftError(first)
        out: bytes = lib.nft_ctx_get_output_buffer(ctx) or b""
        return out.decode(errors="replace")
    finally:
        lib.nft_ctx_free(ctx)
