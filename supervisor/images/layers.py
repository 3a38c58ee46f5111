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
import errno
import gzip
import hashlib
import os
import stat
import subprocess
import tarfile
import zlib
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


_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


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


class _HashingReader:
    """A read-only file that hashes what is read from `inner` (a layer's DiffID)."""

    def __init__(self, inner: IO[bytes] | gzip.GzipFile) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.sha.update(data)
        return data

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
    if stat.S_ISREG(st.st_mode):
        # The walk's lstat is stale by now: a running container may have put a symlink (to
        # anything on the host) in the file's place, so the file read must be the one seen.
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ELOOP):
                raise
            raise LayerError(f"{rel}: replaced while the layer was being written") from e
        with os.fdopen(fd, "rb") as f:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino, stat.S_IFMT(now.st_mode)) != \
                    (st.st_dev, st.st_ino, stat.S_IFMT(st.st_mode)):
                raise LayerError(f"{rel}: replaced while the layer was being written")
            info = tar.gettarinfo(arcname=rel, fileobj=f)
            info.uname = info.gname = ""  # numeric ownership, as every image tool reads it
            tar.addfile(info, f)
        return
    found = tar.gettarinfo(str(p), rel)
    if found is None:  # a socket: not part of a filesystem image
        return
    info = found
    info.uname = info.gname = ""
    if info.isreg():  # was something else at the walk: it changed meanwhile
        raise LayerError(f"{rel}: replaced while the layer was being written")
    tar.addfile(info)
    if stat.S_ISDIR(st.st_mode) and is_opaque(p):
        marker = tarfile.TarInfo(f"{rel}/{OPAQUE_MARKER}")
        marker.mtime = int(st.st_mtime)
        tar.addfile(marker)


# -- unpacking ------------------------------------------------------------------------------


def _open_stream(blob: Path, media_type: str,
                 ) -> tuple[IO[bytes] | gzip.GzipFile, subprocess.Popen[bytes] | None]:
    """The layer's uncompressed tar (the compression found by its first bytes, as Docker's
    reader does, so a mislabelled layer still reads)."""
    with open(blob, "rb") as f:
        head = f.read(4)
    if head == _ZSTD_MAGIC or media_type == oci.OCI_LAYER_ZSTD or media_type.endswith("+zstd"):
        try:
            proc = subprocess.Popen(["zstd", "-dcq", "--", str(blob)], stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL)
        except OSError as e:
            raise LayerError(f"layer {blob.name}: cannot run zstd to decompress it "
                             f"({e.strerror}; install zstd)") from e
        assert proc.stdout is not None
        return proc.stdout, proc
    if head.startswith(_GZIP_MAGIC):
        return gzip.open(blob, "rb"), None
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


def _link_source(dest: Path, rel: str, linkname: str) -> Path:
    """The file a hard link entry names: a regular file already unpacked in this layer and
    reached through directories only (an earlier symlink entry could point anywhere)."""
    refused = LayerError(f"{rel}: a hard link to {linkname}, which is not a file of this "
                         "layer")
    cur = dest
    for part in _clean_name(linkname).split("/"):
        if not stat.S_ISDIR(os.lstat(cur).st_mode):
            raise refused
        cur = cur / part
    try:
        st = os.lstat(cur)
    except FileNotFoundError:
        raise refused from None
    if not stat.S_ISREG(st.st_mode):
        raise refused
    return cur


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


def _hard_link(dest: Path, rel: str, member: tarfile.TarInfo) -> None:
    """A hard link entry, its attributes then set on the (shared) file, as Docker does."""
    source = _link_source(dest, rel, member.linkname)
    target = dest / rel
    _make_room(target, member)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.link(source, target, follow_symlinks=False)
    if os.geteuid() == 0:
        os.chown(target, member.uid, member.gid, follow_symlinks=False)
    os.chmod(target, member.mode & 0o7777)
    os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)


def unpack(blob: Path, media_type: str, dest: Path, diff_id: str | None = None) -> None:
    """Unpacks a layer blob into the empty directory dest, whiteouts as overlayfs's; with
    `diff_id`, refuses a tar whose digest is another (dest is then to be thrown away)."""
    try:
        stream, proc = _open_stream(blob, media_type)
    except OSError as e:
        raise LayerError(f"layer {blob.name}: {e.strerror}") from e
    hashed = _HashingReader(stream)
    dirs: list[tarfile.TarInfo] = []
    try:
        with tarfile.open(fileobj=hashed, mode="r|") as tar:  # type: ignore[call-overload]
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
                    _hard_link(dest, rel, member)
                    continue
                target = dest / rel
                _make_room(target, member)
                member.name = rel
                tar.extract(member, dest, set_attrs=True, numeric_owner=True,
                            filter="fully_trusted")
                if member.isdir():
                    dirs.append(member)
            # Children changed the directories' times: set them last, as extractall does.
            # (A later entry may have put a symlink in a directory's place: not followed.)
            for member in reversed(dirs):
                with contextlib.suppress(OSError):
                    os.utime(dest / member.name, (member.mtime, member.mtime),
                             follow_symlinks=False)
        while hashed.read(1 << 20):  # the DiffID covers the end-of-archive padding too
            pass
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise LayerError(f"layer {blob.name}: {e}") from e
    finally:
        stream.close()
        if proc is not None:
            proc.wait()
    if proc is not None and proc.returncode != 0:
        raise LayerError(f"layer {blob.name}: zstd could not decompress it "
                         f"(exit code {proc.returncode})")
    if diff_id is not None and hashed.digest != diff_id:
        raise LayerError(f"layer {blob.name}: content does not match the image's diff_id "
                         f"{diff_id}, got {hashed.digest}")


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
