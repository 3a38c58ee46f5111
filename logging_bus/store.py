"""The durable, segmented, seq-numbered log store: the bus everything else reads by cursor.

Write path: one ``append`` per pipe read makes one block (``framing.frame``): no Python object
per line, one ``writev`` into the page cache, so a line that ``append`` has returned, and that
a reader may therefore have seen, survives kill -9 of the supervisor (conventions.md, "Logs").
Power loss is what ``fsync`` is for: "1s" (default) syncs at most a second after a line was
stored, in a thread of the store's own, so ``fdatasync`` (≈ 0.4 ms per dirty MB) never stalls
the caller's event loop; "always" syncs every block before ``append`` returns; "never" leaves
it to the kernel.

The store is synchronous and single-threaded on purpose: it never waits on anything but its
own files, and it never imports trio.  (The syncer thread only syncs and closes descriptors
the writer hands it.)  Followers are woken through ``on_append`` callbacks (``follow.py``
turns them into a trio.Event), so a slow reader can never hold the writer up.

    directory/
      lock                         flock: one writer per store
      00000000000000000001.seg     segments, named by the seq they start at
      00000000000000000001.idx     sealed segments' saved indexes (optional)
"""

from __future__ import annotations

import fcntl
import os
import threading
import time as _time
import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from pathlib import Path

from logging_bus.errors import StoreClosed, StoreError, StoreLocked
from logging_bus.framing import (
    FLAG_CUT,
    FLAG_FINAL,
    FLAG_MARK,
    HEADER_SIZE,
    KIND_LINES,
    KIND_SOURCE,
    MARK,
    SEGMENT_MAGIC,
    Framed,
    Header,
    encode_header,
    encode_source,
    frame,
    split_records,
    strip_mark,
)
from logging_bus.reader import Chunk, Reader
from logging_bus.record import Record
from logging_bus.segment import (
    FILE_HEADER,
    SIDECAR,
    SUFFIX,
    BlockFile,
    Segment,
    scan,
    segment_name,
)

FSYNC_POLICIES = ("1s", "always", "never")
SEGMENT_BYTES = 64 << 20
SEGMENT_BYTES_ENV = "SUPERVISE_LOG_SEGMENT_BYTES"


class _Source:
    """Write-side state of one (container, source): what is held until its newline comes."""

    __slots__ = ("held", "id", "mark", "names", "open_piece")

    def __init__(self, source_id: int, names: tuple[str, str]) -> None:
        self.id = source_id
        self.names = names
        self.held = b""  # < 16 KiB: the bytes after the last newline
        self.open_piece = False  # the last record stored is a 16 KiB piece of a longer line
        self.mark: tuple[int, int] | None = None  # the last position stored with its lines


class LogStore:
    """One project's log store.  Open with ``LogStore.open``; not thread-safe."""

    def __init__(self, directory: Path, fsync: str, segment_bytes: int,
                 retain_bytes: int | None, retain_seconds: float | None,
                 clock: Callable[[], float]) -> None:
        if fsync not in FSYNC_POLICIES:
            raise StoreError(f"{directory}: fsync: expected one of 1s, always, never, "
                             f"got {fsync!r}")
        if segment_bytes < 1 << 16:
            raise StoreError(f"{directory}: segment_bytes: expected at least 64 KiB, "
                             f"got {segment_bytes}")
        self.directory = directory
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self.retain_bytes = retain_bytes
        self.retain_seconds = retain_seconds
        self.clock = clock
        self.notices: list[str] = []  # human-readable; the owner prints and clears them
        self.id = ""  # 16 hex digits, set on open (see _store_id)
        self.segments: list[Segment] = []
        self.names: dict[int, tuple[str, str]] = {}  # source id -> (container, source)
        self._sources: dict[tuple[str, str], _Source] = {}
        self._next_seq = 1
        self._last_time = 0.0
        self._fd = -1
        self._lock_fd = -1
        self._dirty = False  # stored bytes not synced yet
        self._last_sync = _time.monotonic()
        # fsync = "1s": the syncer thread's work, guarded by _cv (so is _fd while it dups it)
        self._cv = threading.Condition()
        self._sync_now = False
        self._sync_fds: list[tuple[int, bool]] = []  # (fd, is_dir): sync, then close
        self._stopping = False
        self._syncer: threading.Thread | None = None
        self._hooks: list[Callable[[int], None]] = []
        self._noticed: set[tuple[str, int]] = set()
        self.closed = False

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path, *, fsync: str = "1s", segment_bytes: int | None = None,
             retain_bytes: int | None = None, retain_seconds: float | None = None,
             clock: Callable[[], float] = _time.time) -> LogStore:
        """Open (or create) the store in ``directory``, repairing what a crash left.

        A torn or checksum-bad tail of the last segment is trimmed, damaged blocks elsewhere
        are skipped; both are described in ``.notices``.  Sources that a crash left in the
        middle of a long line are closed, so their next line starts clean.

        ``segment_bytes`` defaults to 64 MiB, or to ``$SUPERVISE_LOG_SEGMENT_BYTES``: a test
        hook, so tests of a real supervisor can make it rotate after a few lines.
        """
        if segment_bytes is None:
            hook = os.environ.get(SEGMENT_BYTES_ENV, "")
            segment_bytes = int(hook) if hook.isdigit() else SEGMENT_BYTES
        store = cls(directory, fsync, segment_bytes, retain_bytes, retain_seconds, clock)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            store._lock()
            store.id = _store_id(directory)
            if fsync == "1s":
                store._syncer = threading.Thread(target=store._sync_loop, daemon=True,
                                                 name=f"log-sync {directory}")
                store._syncer.start()
            store._load()
        except OSError as exc:
            store._release()
            raise StoreError(f"{directory}: {exc.strerror or exc}") from exc
        except BaseException:
            store._release()
            raise
        return store

    def _lock(self) -> None:
        self._lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreLocked(f"{self.directory}: the log store is open in another process"
                              ) from None

    def _load(self) -> None:
        paths = sorted(p for p in self.directory.iterdir()
                       if p.suffix == SUFFIX and p.stem.isdigit())
        for i, path in enumerate(paths):
            base = int(path.stem)
            last = i == len(paths) - 1
            size = path.stat().st_size
            seg = Segment.load_index(path, base, size)
            if seg is None:
                seg, notices, torn = scan(path, base, verify=last)
                self.notices += notices
                if torn is not None and last:
                    self._trim(seg, torn, size)
                elif torn is not None:
                    self.notices.append(f"{path}: bytes {torn}-{size - 1} are damaged; skipped")
            if last:
                path.with_suffix(SIDECAR).unlink(missing_ok=True)  # appends make it stale
            else:
                seg.sealed = True
            self.segments.append(seg)
            self.names.update(seg.sources)
            self._next_seq = max(self._next_seq, seg.next_seq)
            self._last_time = max(self._last_time, seg.last_time)
        if not self.segments:
            self._new_segment()
        else:
            self._fd = os.open(self.segments[-1].path,
                               os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._close_open_lines()
        self.enforce_retention()

    def _trim(self, seg: Segment, at: int, size: int) -> None:
        if at == 0 and size >= FILE_HEADER:  # not a segment of ours: keep it, start anew
            aside = seg.path.with_name(seg.path.name + ".damaged")
            seg.path.rename(aside)
            seg.path.write_bytes(SEGMENT_MAGIC)
            self.notices.append(f"{seg.path}: not a log segment; moved to {aside.name}")
            return
        if at < FILE_HEADER:  # a crash while the segment was being created
            seg.path.write_bytes(SEGMENT_MAGIC)
            return
        os.truncate(seg.path, at)
        self.notices.append(f"{seg.path}: a torn write at the end ({size - at} bytes from "
                            f"offset {at}) was trimmed")

    def _close_open_lines(self) -> None:
        """End lines a crash left open, so a source's next line is not glued to them."""
        tails: dict[int, bool] = {}
        for seg in self.segments:
            tails.update(seg.tails)
            for source_id, mark in seg.marks.items():
                self._source(*seg.sources.get(source_id, self.names[source_id])).mark = mark
        for source_id, open_piece in tails.items():
            if open_piece and source_id in self.names:
                src = self._source(*self.names[source_id])
                src.open_piece = True
                self._write(src, (b"",), 0, 1, FLAG_FINAL, None)

    # -- writing -----------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The seq of the last line stored (0 if none ever was)."""
        return self._next_seq - 1

    @property
    def first_seq(self) -> int:
        """The oldest seq still stored (retention moves it forward)."""
        return self.segments[0].first_seq if self.segments else self._next_seq

    def append(self, container: str, source: str, data: bytes, *,
               now: float | None = None, mark: tuple[int, int] | None = None) -> int:
        """Store what one read of a source returned, as one block with one timestamp.

        Bytes after the last newline are held (per source, < 16 KiB) until the next append
        or ``flush``.  Returns the seq of the last line stored, 0 if nothing was stored yet.

        ``mark`` is for tailed files: (inode, file offset just after ``data``).  The store
        keeps, in the same block as the lines, the offset where the *stored* bytes end (the
        held tail is not stored yet), and ``position`` gives it back after a restart.
        """
        src = self._source(container, source)
        framed, src.held = frame(src.held, data)
        if framed is None:
            return 0
        if mark is not None:
            mark = (mark[0], mark[1] - len(src.held))
        return self._write_framed(src, framed, now, mark)

    def flush(self, container: str, source: str, *, now: float | None = None,
              mark: tuple[int, int] | None = None) -> int:
        """The source reached EOF: store the bytes it left without a newline.

        Returns the seq of that last line, or 0 if there was nothing to store.
        """
        src = self._sources.get((container, source))
        if src is None or not (src.held or src.open_piece):
            return 0
        held, src.held = src.held, b""
        return self._write(src, (held,), len(held), 1, FLAG_FINAL, now, mark)

    def position(self, container: str, source: str) -> tuple[int, int] | None:
        """The last ``mark`` stored for this source: where a tailer resumes, exactly."""
        src = self._sources.get((container, source))
        return None if src is None else src.mark

    def _write_framed(self, src: _Source, framed: Framed, now: float | None,
                      mark: tuple[int, int] | None) -> int:
        return self._write(src, framed.parts, framed.length, framed.nlines, framed.flags, now,
                           mark)

    def _source(self, container: str, source: str) -> _Source:
        key = (container, source)
        src = self._sources.get(key)
        if src is None:
            known = {v: k for k, v in self.names.items()}.get(key)
            source_id = known if known is not None else max(self.names, default=0) + 1
            src = self._sources[key] = _Source(source_id, key)
            self.names[source_id] = key
        return src

    def _write(self, src: _Source, parts: tuple[bytes | memoryview, ...], length: int,
               count: int, flags: int, now: float | None,
               mark: tuple[int, int] | None = None) -> int:
        if self.closed:
            raise StoreClosed(f"{self.directory}: the log store is closed")
        seg = self.segments[-1]
        if seg.size >= self.segment_bytes and seg.has_lines:
            try:
                seg = self._rotate()
            except OSError as exc:
                raise StoreError(f"{self.directory}: cannot start a new segment: "
                                 f"{exc.strerror or exc}") from exc
        t = self.clock() if now is None else now
        t = self._last_time if t < self._last_time else t  # seq order is the truth
        if src.id not in seg.sources:
            payload = encode_source(*src.names)
            self._put(seg, Header(len(payload), zlib.crc32(payload), self._next_seq, t, 0,
                                  src.id, KIND_SOURCE, 0), (payload,))
            seg.sources[src.id] = src.names
        src.open_piece = bool(flags & FLAG_CUT) and parts[-1][-1] != 0x0A
        if mark is not None:
            parts = (*parts, MARK.pack(*mark))
            length += MARK.size
            flags |= FLAG_MARK
            src.mark = mark
        pcrc = 0
        for part in parts:
            pcrc = zlib.crc32(part, pcrc)
        self._put(seg, Header(length, pcrc, self._next_seq, t, count, src.id, KIND_LINES, flags),
                  parts, src.open_piece, mark)
        self._last_time = t
        self._next_seq += count
        if self.fsync == "always":
            self.sync(wait=True)
        last = self._next_seq - 1
        for hook in list(self._hooks):
            hook(last)
        return last

    def _put(self, seg: Segment, hdr: Header, parts: tuple[bytes | memoryview, ...],
             open_piece: bool = False, mark: tuple[int, int] | None = None) -> None:
        """Write one block whole, or not at all (a failed write is cut back off)."""
        off = seg.size
        header = encode_header(hdr)
        total = HEADER_SIZE + hdr.length
        try:
            done = os.writev(self._fd, [header, *parts])
            while done < total:  # a short write: ENOSPC looming or a signal; finish or fail
                rest = (header + b"".join(parts))[done:]
                done += os.write(self._fd, rest)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, off)
            except OSError:
                pass
            raise StoreError(f"{seg.path}: cannot append: {exc.strerror or exc}") from exc
        seg.add(off, hdr, open_piece, mark)
        if not self._dirty:  # the syncer sleeps until there is something to sync
            with self._cv:
                self._dirty = True
                self._cv.notify()

    def _rotate(self) -> Segment:
        old = self.segments[-1]
        if self._syncer is not None:  # the syncer syncs and closes it, off this thread
            with self._cv:
                self._sync_fds.append((self._fd, False))
                self._fd = -1
                self._dirty = False
                self._cv.notify()
        else:
            self.sync(wait=True)
            os.close(self._fd)
            self._fd = -1
        old.sealed = True
        try:
            old.save_index()
        except OSError as exc:
            self.notices.append(f"{old.path}: index not saved ({exc.strerror}); "
                                f"it will be rebuilt on open")
        seg = self._new_segment()
        self.enforce_retention()
        return seg

    def _new_segment(self) -> Segment:
        path = self.directory / segment_name(self._next_seq)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     0o644)
        os.write(fd, SEGMENT_MAGIC)
        seg = Segment(path, self._next_seq)
        self.segments.append(seg)
        if self.fsync == "always":
            os.fsync(fd)
            self._sync_dir()
        dfd = -1
        if self._syncer is not None:  # the new file's name: synced by the syncer too
            dfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        with self._cv:
            self._fd = fd
            if dfd >= 0:
                self._sync_fds.append((dfd, True))
                self._dirty = True
                self._cv.notify()
        return seg

    def _sync_dir(self) -> None:
        dfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def sync(self, *, wait: bool = False) -> None:
        """Make every stored line survive power loss (cheap when nothing is new).

        With fsync = "1s" this only asks the syncer thread to sync now and returns at once,
        so an event loop may call it; ``wait=True`` syncs in the caller's thread and returns
        when it is done.  Thread-safe.
        """
        if self.fsync == "never":
            return
        if self._syncer is not None and not wait:
            with self._cv:
                self._sync_now = True
                self._cv.notify()
            return
        self._sync_pending()

    def _sync_pending(self) -> None:
        """Sync what is dirty now: the active segment (through a dup, so a rotation may close
        the writer's descriptor meanwhile) and what rotations handed over."""
        with self._cv:
            work, self._sync_fds = self._sync_fds, []
            if self._dirty and self._fd >= 0:
                work.append((os.dup(self._fd), False))
            self._dirty = False
            self._sync_now = False
        for fd, is_dir in work:
            try:
                os.fsync(fd) if is_dir else os.fdatasync(fd)
            except OSError as exc:  # EIO: the kernel dropped the pages; nothing to retry
                self.notices.append(f"{self.directory}: sync: {exc.strerror or exc}")
            finally:
                os.close(fd)
        self._last_sync = _time.monotonic()

    def _sync_loop(self) -> None:
        """The syncer thread (fsync = "1s"): sync a second after the last sync, once there is
        something to sync, or at once when asked; so an idle store is synced too."""
        cv = self._cv
        while True:
            with cv:
                while not self._stopping:
                    if self._sync_now:
                        break
                    if self._dirty:
                        left = self._last_sync + 1.0 - _time.monotonic()
                        if left <= 0:
                            break
                        cv.wait(left)
                    else:
                        cv.wait()
                if self._stopping:
                    return
            self._sync_pending()

    def _stop_syncer(self) -> None:
        if self._syncer is not None:
            with self._cv:
                self._stopping = True
                self._cv.notify()
            self._syncer.join()
            self._syncer = None

    def enforce_retention(self, now: float | None = None) -> None:
        """Delete the oldest sealed segments beyond ``retain_bytes`` or ``retain_seconds``.

        Runs at each rotation; call it from a timer too, so age applies to an idle store.
        Readers that hold a deleted segment open finish reading it (POSIX unlink).
        """
        now = self.clock() if now is None else now
        total = sum(s.size for s in self.segments)
        while len(self.segments) > 1:
            oldest = self.segments[0]
            too_big = self.retain_bytes is not None and total > self.retain_bytes
            too_old = self.retain_seconds is not None and \
                oldest.last_time < now - self.retain_seconds
            if not (too_big or too_old):
                break
            oldest.path.unlink(missing_ok=True)
            oldest.path.with_suffix(SIDECAR).unlink(missing_ok=True)
            total -= oldest.size
            del self.segments[0]

    def on_append(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """Call ``callback(last_seq)`` after every block, and once at close.

        It runs inside ``append``: it must be quick and must not raise (set a flag, wake a
        task).  Returns a function that removes it.
        """
        self._hooks.append(callback)

        def remove() -> None:
            if callback in self._hooks:
                self._hooks.remove(callback)
        return remove

    def close(self) -> None:
        """Sync, save the active segment's index, wake followers so they end.

        Held bytes without a newline stay unstored unless the owner flushed its sources
        first (a supervisor flushes each source when its pipe reaches EOF).
        """
        if self.closed:
            return
        try:
            self._stop_syncer()
            if self._fd >= 0:
                self.sync(wait=True)
                os.close(self._fd)
                self._fd = -1
                self.segments[-1].save_index()
        except OSError as exc:
            self.notices.append(f"{self.directory}: closing: {exc.strerror or exc}")
        finally:
            self.closed = True
            self._release()
            for hook in list(self._hooks):
                hook(self.last_seq)

    def _release(self) -> None:
        self._stop_syncer()
        for fd, _ in self._sync_fds:
            os.close(fd)
        self._sync_fds = []
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- finding seqs ------------------------------------------------------------------------

    def locate(self, seq: int) -> tuple[int, int]:
        """(segment index, offset of a block at or before ``seq``'s block) for a reader."""
        segs = self.segments
        i = max(bisect_right([s.base_seq for s in segs], seq) - 1, 0)
        seg = segs[i]
        j = bisect_right(seg.seqs, seq) - 1
        return i, seg.offsets[j] if j >= 0 else FILE_HEADER

    def seq_at(self, t: float) -> int:
        """The first seq stored at or after time ``t`` (``last_seq + 1`` if none is)."""
        segs = [s for s in self.segments if s.has_lines]
        i = bisect_left([s.last_time for s in segs], t)
        if i == len(segs):
            return self._next_seq
        seg = segs[i]
        j = max(bisect_left(seg.times, t) - 1, 0)
        for _off, hdr in self._headers(seg, seg.offsets[j] if seg.offsets else FILE_HEADER):
            if hdr.kind == KIND_LINES and hdr.nlines and hdr.time >= t:
                return hdr.first_seq
        return self._next_seq  # pragma: no cover - last_time >= t guarantees a hit

    def tail_cursor(self, n: int, containers: set[str] | None = None,
                    sources: set[str] | None = None) -> int:
        """The seq to read from to get the last ``n`` lines (of these containers/sources).

        Walks back from the end over headers only, one index range at a time, and only over
        the ranges in which these sources wrote: the cost is that of their last few blocks,
        whatever the store's size and whatever other containers wrote since.  A line kept
        as 16 KiB pieces counts once.
        """
        if n <= 0:
            return self._next_seq
        allowed = self.source_filter(containers, sources)
        want = n + 1  # the cursor goes right after the (n+1)-th line end from the back
        for seg in reversed(self.segments):
            if allowed is not None and not any(allowed(k) for k in seg.tails):
                continue
            stops = [*seg.offsets, seg.size]
            for j in reversed(seg.ranges_of(allowed)):  # only the ranges these sources wrote in
                blocks = [(off, hdr) for off, hdr in self._headers(seg, stops[j], stops[j + 1])
                          if hdr.kind == KIND_LINES and hdr.nlines
                          and (allowed is None or allowed(hdr.source_id))]
                for off, hdr in reversed(blocks):
                    if not hdr.flags & (FLAG_CUT | FLAG_FINAL):
                        if hdr.nlines >= want:
                            return hdr.end_seq - want + 1
                        want -= hdr.nlines
                        continue
                    ends = self._line_ends(seg, off, hdr)
                    for k in range(hdr.nlines - 1, -1, -1):
                        if ends[k]:
                            want -= 1
                            if not want:
                                return hdr.first_seq + k + 1
        return self.first_seq

    def _line_ends(self, seg: Segment, off: int, hdr: Header) -> list[bool]:
        """Which records of a block with pieces end a line."""
        bf = BlockFile(seg.path)
        try:
            payload = bf.checked_payload(off, hdr)
        finally:
            bf.close()
        if payload is None:
            return [False] * hdr.nlines
        payload = strip_mark(payload, hdr.flags)[0]
        if hdr.flags & FLAG_FINAL:
            return [True]
        _, unterminated = split_records(payload, hdr.flags)
        return [True] * hdr.nlines if unterminated is None else [not u for u in unterminated]

    def _headers(self, seg: Segment, start: int, stop: int | None = None
                 ) -> Iterator[tuple[int, Header]]:
        """The good headers in ``seg`` from ``start`` (a block boundary) to ``stop``."""
        end = seg.size
        stop = end if stop is None else stop
        bf = BlockFile(seg.path)
        try:
            off = start
            while off < stop:
                hdr = bf.header(off, end)
                if hdr is None:
                    nxt = bf.resync(off, end, 0, False)
                    if nxt is None:
                        return
                    off = nxt
                    continue
                yield off, hdr
                off += HEADER_SIZE + hdr.length
        finally:
            bf.close()

    def source_filter(self, containers: set[str] | None, sources: set[str] | None
                      ) -> Callable[[int], bool] | None:
        """A predicate on source ids, or None when everything passes."""
        if containers is None and sources is None:
            return None
        cache: dict[int, bool] = {}

        def allowed(source_id: int) -> bool:
            ok = cache.get(source_id)
            if ok is None:
                container, source = self.names.get(source_id, ("", ""))
                ok = cache[source_id] = ((containers is None or container in containers)
                                         and (sources is None or source in sources))
            return ok
        return allowed

    def notice(self, path: Path, off: int, text: str) -> None:
        """Report damage a reader found, once per place."""
        if (str(path), off) not in self._noticed:
            self._noticed.add((str(path), off))
            self.notices.append(text)

    # -- reading -----------------------------------------------------------------------------

    def reader(self, start_seq: int, *, containers: set[str] | None = None,
               sources: set[str] | None = None, join: bool = True) -> Reader:
        """A cursor that reads forward from ``start_seq`` and can be polled again later."""
        return Reader(self, start_seq, containers=containers, sources=sources, join=join)

    def read(self, start_seq: int = 1, *, containers: set[str] | None = None,
             sources: set[str] | None = None, until_seq: int | None = None,
             limit: int | None = None, join: bool = True) -> Iterator[Record]:
        """Records from ``start_seq`` up to (not including) ``until_seq``, in seq order.

        With ``join`` (the default) a line kept as 16 KiB pieces comes back as one record.
        """
        with self.reader(start_seq, containers=containers, sources=sources,
                         join=join) as reader:
            yield from reader.records(until_seq=until_seq, limit=limit)

    def read_raw(self, start_seq: int = 1, *, containers: set[str] | None = None,
                 sources: set[str] | None = None, until_seq: int | None = None
                 ) -> Iterator[Chunk]:
        """The bytes as written, a block at a time: the fast path for plain output."""
        with self.reader(start_seq, containers=containers, sources=sources) as reader:
            yield from reader.chunks(until_seq=until_seq)


def _store_id(directory: Path) -> str:
    """This store's own name, made on its first open and kept: a reader outside (a search
    index) tells its lines from another host's or a reset store's, which share the seqs."""
    path = directory / "id"
    try:
        text = path.read_text().strip()
        if len(text) == 16 and all(c in "0123456789abcdef" for c in text):
            return text
    except FileNotFoundError:
        pass
    text = os.urandom(8).hex()
    tmp = directory / "id.tmp"
    tmp.write_text(text + "\n")
    tmp.replace(path)
    return text
