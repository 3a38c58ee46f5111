"""Layer tars: made from a directory (an overlay upper dir, or a plain tree), and unpacked
into a directory that serves as one overlay lower layer.

Two spellings of a deletion meet here.  In a tar, the OCI image spec's: an empty file
``.wh.NAME`` deletes NAME of the layers below, and ``DIR/.wh..wh..opq`` hides everything
below in DIR.  On disk, overlayfs's: a character device 0/0 named NAME, and the xattr
``trusted.overlay.opaque=y`` on DIR.  Writing a tar translates disk -> tar, unpacking
tar -> disk, so an unpacked layer is mounted as it is, with no merging.

DiffID = sha256 of the uncompressed tar; the blob's digest is that of the bytes stored.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from supervisor.errors import SupervisorError
from supervisor.images import oci

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
# overlayfs features that store a change somewhere a plain walk does not see.
UNSUPPORTED_XATTRS = ("trusted.overlay.redirect", "trusted.overlay.metacopy")
# Regenerated at each start (container.write_etc), never part of an image (as Docker's).
RUNTIME_FILES = frozenset({"etc/hostname", "etc/hosts", "etc/resolv.conf"})


class LayerError(SupervisorError):
    """A layer could not be made or unpacked."""


class _Hashing:
    """A write-only file that hashes and counts what passes through to `inner`."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.inner.write(data)
        return len(data)

    def flush(self) -> None:
        self.inner.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


@dataclass(frozen=True)
class Written:
    """A layer blob written to disk."""

    path: Path
    digest: str  # of the blob (compressed)
    diff_id: str  # of the uncompressed tar
    size: int
    media_type: str


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str | Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def walk(root: Path) -> Iterator[tuple[str, Path, os.stat_result]]:
    """(relative path, path, lstat) of everything under root, sorted, parents first."""
    def inner(d: Path, rel: str) -> Iterator[tuple[str, Path, os.stat_result]]:
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            r = f"{rel}{e.name}"
            st = e.stat(follow_symlinks=False)
            yield r, Path(e.path), st
            if stat.S_ISDIR(st.st_mode):
                yield from inner(Path(e.path), r + "/")
    yield from inner(root, "")


def _entries(root: Path, exclude: frozenset[str]) -> list[tuple[str, Path, os.stat_result]]:
    """The walk minus `exclude`, and minus a directory left empty only by the exclusion (the
    `etc` that write_etc made in an upper dir)."""
    out = [(r, p, st) for r, p, st in walk(root) if r not in exclude]
    parents_of_excluded = {os.path.dirname(x) for x in exclude}
    if not parents_of_excluded:
        return out
    kept = []
    for r, p, st in out:
        if r in parents_of_excluded and stat.S_ISDIR(st.st_mode) and \
                not any(o.startswith(r + "/") for o, _, _ in out):
            continue
        kept.append((r, p, st))
    return kept


def write_layer(root: Path, out_dir: Path, *, exclude: frozenset[str] = frozenset(),
                compress: bool = True) -> Written:
    """A layer blob of everything under `root` (overlay whiteouts become OCI ones), in a new
    file under out_dir (the caller moves it into the store by its digest)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, name = _tempfile(out_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as raw:
            outer = _Hashing(raw)
            gz: gzip.GzipFile | None = None
            if compress:
                # mtime=0: the same tree gives the same blob digest
                gz = gzip.GzipFile(fileobj=outer, mode="wb", compresslevel=1,
                                   mtime=0)
                inner = _Hashing(gz)  # type: ignore[arg-type]
            else:
                inner = outer
            with tarfile.open(fileobj=inner, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                for rel, p, st in _entries(root, exclude):
                    _add(tar, rel, p, st)
            if gz is not None:
                gz.close()
        media = oci.OCI_LAYER_GZIP if compress else oci.OCI_LAYER_TAR
        return Written(path, outer.digest, inner.digest, outer.size, media)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _tempfile(d: Path) -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(prefix=".layer-", dir=d)


def _add(tar: tarfile.TarFile, rel: str, p: Path, st: os.stat_result) -> None:
    for attr in UNSUPPORTED_XATTRS:
        with contextlib.suppress(OSError):
            os.getxattr(p, attr, follow_symlinks=False)
            raise LayerError(f"{rel}: overlayfs {attr.rsplit('.', 1)[1]} is not supported "
                             "in a layer (turn off redirect_dir and metacopy)")
    if is_whiteout(st):
        head, _, base = rel.rpartition("/")
        info = tarfile.TarInfo((head + "/" if head else "") + WHITEOUT_PREFIX + base)
        info.mtime = int(st.st_mtime)
        tar.addfile(info)
        return
    info = tar.gettarinfo(str(p), rel)
    if info is None:  # a socket: not part of a filesystem image
        return
    info.uname = info.gname = ""  # numeric ownership, as every image tool reads it
    if info.isreg():
        with open(p, "rb") as f:
            tar.addfile(info, f)
    else:
        tar.addfile(info)
    if stat.S_ISDIR(st.st_mode) and is_opaque(p):
        marker = tarfile.TarInfo(f"{rel}/{OPAQUE_MARKER}")
        marker.mtime = int(st.st_mtime)
        tar.addfile(marker)


# -- unpacking ------------------------------------------------------------------------------


def _open_stream(blob: Path, media_type: str,
                 ) -> tuple[IO[bytes], subprocess.Popen[bytes] | None]:
    if media_type == oci.OCI_LAYER_ZSTD or media_type.endswith("+zstd"):
        proc = subprocess.Popen(["zstd", "-dcq", str(blob)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        return proc.stdout, proc
    return open(blob, "rb"), None


def _clean_name(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"{name}: a path outside the layer")
    return "/".join(parts)


def _check_parents(dest: Path, rel: str) -> None:
    """No entry is written through a symlink (an earlier entry could point anywhere)."""
    cur = dest
    for part in rel.split("/")[:-1]:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            raise LayerError(f"{rel}: its parent {part} is not a directory in this layer")


def _make_room(target: Path, member: tarfile.TarInfo) -> None:
    """A later entry replaces an earlier one of the same name (tar semantics)."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if member.isdir():
            return
        import shutil

        shutil.rmtree(target)
    else:
        os.unlink(target)


def unpack(blob: Path, media_type: str, dest: Path) -> None:
    """Unpacks a layer blob into the empty directory dest, whiteouts as overlayfs's."""
    stream, proc = _open_stream(blob, media_type)
    dirs: list[tarfile.TarInfo] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                rel = _clean_name(member.name)
                if not rel:
                    continue
                head, _, base = rel.rpartition("/")
                parent = dest / head if head else dest
                _check_parents(dest, rel)
                if base == OPAQUE_MARKER:
                    parent.mkdir(parents=True, exist_ok=True)
                    os.setxattr(parent, OPAQUE_XATTR, b"y", follow_symlinks=False)
                    continue
                if base.startswith(WHITEOUT_PREFIX):
                    target = parent / base[len(WHITEOUT_PREFIX):]
                    parent.mkdir(parents=True, exist_ok=True)
                    if not os.path.lexists(target):  # the same layer's entry wins (spec)
                        os.mknod(target, stat.S_IFCHR, os.makedev(0, 0))
                    continue
                if member.islnk():
                    member.linkname = _clean_name(member.linkname)
                target = dest / rel
                _make_room(target, member)
                member.name = rel
                tar.extract(member, dest, set_attrs=True, numeric_owner=True,
                            filter="fully_trusted")
                if member.isdir():
                    dirs.append(member)
            # Children changed the directories' times: set them last, as extractall does.
            for member in reversed(dirs):
                with contextlib.suppress(OSError):
                    os.utime(dest / member.name, (member.mtime, member.mtime))
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as e:
        raise LayerError(f"layer {blob.name}: {e}") from e
    finally:
        stream.close()
        if proc is not None:
            proc.wait()


# -- what changed ---------------------------------------------------------------------------


def exists_below(rel: str, lowers: list[Path]) -> bool:
    """Whether `rel` exists in the overlay of `lowers` (top first), whiteouts honoured."""
    parts = rel.split("/")
    for lower in lowers:
        cur = lower
        hidden = False
        for i, part in enumerate(parts):
            cur = cur / part
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                break
            if is_whiteout(st):
                return False
            if i == len(parts) - 1:
                return True
            if not stat.S_ISDIR(st.st_mode):
                break
            if is_opaque(cur):
                hidden = True  # nothing further down shows through this directory
        else:
            continue
        if hidden:
            return False
    return False


def changes(upper: Path, lowers: list[Path]) -> list[tuple[str, str]]:
    """Docker's `diff`: ("A"|"C"|"D", "/path") for a container's writable layer."""
    out = []
    for rel, _, st in _entries(upper, RUNTIME_FILES):
        if is_whiteout(st):
            out.append(("D", "/" + rel))
        else:
            out.append(("C" if exists_below(rel, lowers) else "A", "/" + rel))
    return out
