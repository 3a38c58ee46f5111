"""Sources: what feeds the store.  Container pipes, and log files in volumes tailed with inotify.

Pipes (``pump``): one ``append`` per read, ``flush`` at EOF (the held unterminated tail becomes
a ``partial`` line).  Files (``tail_files``): kernel-recipes §7.  The *directory* is watched,
so the watch survives rotation and sees files created later.  Any event, or a slow tick that
covers a lost event and filesystems that send none, drains every matching file:

- ``pread`` from the offset, each read one ``append`` carrying ``mark=(inode, offset)``, so the
  position is stored in the same block as the lines;
- size below the offset: copytruncate happened; the rest of the old line is flushed and
  reading starts again at 0;
- the name now points at another inode, or at nothing: rename rotation; the old descriptor
  is read to its end (a writer may still be finishing a line into it), flushed and closed,
  and the new file is read from 0.

After a supervisor restart a tailer resumes at ``LogStore.position``: the stored end, not the
read end, so bytes that were held and never stored are read again.  Nothing lost, nothing
repeated.  If the file was rotated by rename meanwhile, the old inode is looked for in the
directory (``redis.log.1``) and its rest is read first.
"""

from __future__ import annotations

import ctypes
import errno
import fnmatch
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import trio

from logging_bus.errors import LogBusError
from logging_bus.store import LogStore

READ_SIZE = 64 << 10  # one pipe buffer: one read, one block
_IN_MODIFY = 0x002
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_WATCH_MASK = (_IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO
               | _IN_CREATE | _IN_DELETE)


async def pump(stream: trio.abc.ReceiveStream, store: LogStore, container: str, source: str,
               ) -> int:
    """Store everything read from ``stream`` until EOF; return the last seq stored."""
    last = 0
    while data := await stream.receive_some(READ_SIZE):
        last = store.append(container, source, bytes(data)) or last
    return store.flush(container, source) or last


class _Inotify:
    """An inotify descriptor watching directories, waited on with trio."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise LogBusError(f"inotify: {os.strerror(err)}")
        self.fd: int = fd

    def watch(self, directory: Path) -> bool:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(directory), _WATCH_MASK)
        return bool(wd >= 0)

    async def wait(self, timeout: float) -> None:
        """Until something happens in a watched directory, or ``timeout`` passes."""
        with trio.move_on_after(timeout):
            await trio.lowlevel.wait_readable(self.fd)
        try:
            while os.read(self.fd, 65536):  # which file does not matter: all are drained
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self.fd >= 0:
            trio.lowlevel.notify_closing(self.fd)
            os.close(self.fd)
            self.fd = -1


class _Tailed:
    """One file being tailed: its open descriptor, inode and read offset."""

    __slots__ = ("fd", "ino", "offset", "path", "source")

    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self.source = source
        self.fd = -1
        self.ino = 0
        self.offset = 0


_OPEN_FILE = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
_OPEN_DIR = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_DIRECTORY


def _open_regular(path: Path) -> int | None:
    """A regular file, never through a symlink, never a FIFO or a device: the directory
    belongs to a container, which could plant `ln -s /etc/shadow x.log` or `mkfifo`."""
    try:
        fd = os.open(path, _OPEN_FILE)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _safe_directory(directory: Path, trusted_root: Path | None) -> bool:
    """Below `trusted_root` (a volume's host folder) no component may be a symlink: the
    container could point its log directory at the host's /etc."""
    if trusted_root is None:
        return True
    try:
        relative = directory.relative_to(trusted_root)
    except ValueError:
        return False
    fd = os.open(trusted_root, os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY)
    try:
        for part in relative.parts:
            try:
                nxt = os.open(part, _OPEN_DIR, dir_fd=fd)
            except OSError:
                return False
            os.close(fd)
            fd = nxt
        return True
    finally:
        os.close(fd)


class _Tailer:
    def __init__(self, store: LogStore, container: str, directory: Path,
                 container_dir: str, patterns: Sequence[str],
                 trusted_root: Path | None = None) -> None:
        self.store = store
        self.container = container
        self.directory = directory
        self.container_dir = container_dir.rstrip("/")
        self.patterns = patterns
        self.trusted_root = trusted_root
        self.files: dict[str, _Tailed] = {}

    def drain_all(self) -> None:
        try:
            names = sorted(os.listdir(self.directory)) if _safe_directory(
                self.directory, self.trusted_root) else []
        except OSError:  # missing yet, or not a directory (the container's choice)
            names = []
        for name in names:
            if name not in self.files and any(fnmatch.fnmatchcase(name, p)
                                              for p in self.patterns):
                source = f"file:{self.container_dir}/{name}"
                self.files[name] = _Tailed(self.directory / name, source)
        for tailed in self.files.values():
            self.drain(tailed)

    def drain(self, t: _Tailed) -> None:
        if t.fd < 0 and not self._open(t):
            return
        self._read(t)
        try:
            now_ino = os.lstat(t.path).st_ino
        except OSError:
            now_ino = 0
        if now_ino != t.ino:  # rotated by rename, or deleted: finish the old file
            self._read(t)
            self.store.flush(self.container, t.source, mark=(t.ino, t.offset))
            os.close(t.fd)
            t.fd = -1
            if now_ino and self._open(t):
                self._read(t)

    def _open(self, t: _Tailed) -> bool:
        fd = _open_regular(t.path)
        if fd is None:
            return False
        t.fd, t.ino, t.offset = fd, os.fstat(fd).st_ino, 0
        pos = self.store.position(self.container, t.source)
        if pos is None:
            return True
        ino, offset = pos
        if ino == t.ino:
            t.offset = offset
        elif ino:
            self._finish_rotated(t, ino, offset)
        return True

    def _finish_rotated(self, t: _Tailed, ino: int, offset: int) -> None:
        """The file was rotated while nobody tailed it: read the old one's rest first."""
        for entry in os.scandir(self.directory):
            if entry.is_file(follow_symlinks=False) and entry.inode() == ino:
                old = _Tailed(Path(entry.path), t.source)
                fd = _open_regular(old.path)
                if fd is None:
                    return
                old.fd = fd
                old.ino, old.offset = ino, offset
                try:
                    self._read(old)
                finally:
                    os.close(old.fd)
                break
        self.store.flush(self.container, t.source, mark=(t.ino, 0))

    def _read(self, t: _Tailed) -> None:
        if os.fstat(t.fd).st_size < t.offset:  # copytruncate: start again at 0
            self.store.flush(self.container, t.source, mark=(t.ino, 0))
            t.offset = 0
        while True:
            try:
                data = os.pread(t.fd, READ_SIZE, t.offset)
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if not data:
                return
            t.offset += len(data)
            self.store.append(self.container, t.source, data, mark=(t.ino, t.offset))

    def close(self) -> None:
        for t in self.files.values():
            if t.fd >= 0:
                os.close(t.fd)
                t.fd = -1


async def tail_files(store: LogStore, container: str, directory: Path, container_dir: str,
                     patterns: Sequence[str], *, tick: float = 1.0,
                     trusted_root: Path | None = None,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Tail the files in ``directory`` (host side) whose names match ``patterns``, forever.

    Records carry ``file:<container_dir>/<name>`` as their source.  Returns only when
    cancelled; the bytes of an unfinished last line stay unstored then, and are read again
    by the next tailer from the stored position.
    """
    inotify = _Inotify()
    tailer = _Tailer(store, container, directory, container_dir, patterns, trusted_root)
    try:
        watching = inotify.watch(directory)
        tailer.drain_all()
        task_status.started()
        while True:
            await inotify.wait(tick)
            if not watching:  # the directory did not exist yet: the tick finds it
                watching = inotify.watch(directory)
            tailer.drain_all()
    finally:
        tailer.close()
        inotify.close()
