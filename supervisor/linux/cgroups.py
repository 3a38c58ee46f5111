"""cgroups: one driver interface, a v1 and a v2 implementation chosen at start.

The split follows runc's ``libcontainer/cgroups/fs`` (v1) and ``fs2`` (v2)::

    detect() -> CgroupDriver            V1Driver | V2Driver
                 .create(name) -> Cgroup    V1Cgroup | V2Cgroup
                   .apply(Limits) .stats() -> Stats .pids() .kill_all() .remove()

A container's cgroup lives under the supervisor's own cgroup (``<mount>/<own path>/<name>``),
so a delegated systemd unit or a container runtime's sub-tree is enough; nothing is written
outside it.  A hybrid host (v1 controllers plus a cgroup2 mount at ``/sys/fs/cgroup/unified``)
is driven as v1, because that is where the controllers are.

Every OSError is translated once, here, into a CgroupError naming the cgroup and the file:
``cgroup supervise-p-web: memory.limit_in_bytes: write 52428800: Device or resource busy``.

Blocking: ``kill_all`` and ``remove`` sleep while they retry; call them from a worker thread.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from supervisor.errors import CgroupError

PERIOD_US = 100_000
# The kernel refuses a CFS quota below 1 ms.
_MIN_QUOTA_US = 1_000
_V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "freezer")  # freezer: pause
_V2_CONTROLLERS = ("memory", "cpu", "pids")
# The v2 leaf the supervisor moves itself into, so that its own cgroup may have children
# with controllers enabled ("no internal processes").
LEAF = "supervisor"
# v1 reads "unlimited" back as PAGE_COUNTER_MAX pages (9223372036854771712); no real limit
# comes near 2**62.
_V1_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class Limits:
    """Resource limits with Docker's meanings; None means unlimited."""

    memory: int | None = None  # bytes
    memswap: int | None = None  # memory+swap bytes; -1 unlimited; None/0 -> 2*memory (Docker)
    cpus: float | None = None  # quota = cpus * PERIOD_US
    pids: int | None = None  # None/0/-1 unlimited

    def __post_init__(self) -> None:
        # Config should refuse these first; a SupervisorError here still reaches the user
        # as one line rather than a traceback.
        if self.memory is not None and self.memory <= 0:
            raise CgroupError(f"limits: memory: expected a positive size, got {self.memory}")
        if self.memswap not in (None, 0, -1):
            if self.memory is None:
                raise CgroupError("limits: memswap: needs memory too, as Docker's --memory-swap")
            if self.memswap < self.memory:
                raise CgroupError(
                    f"limits: memswap: expected at least memory ({self.memory}), got {self.memswap}"
                )
        if self.cpus is not None and not self.cpus > 0:
            raise CgroupError(f"limits: cpus: expected a positive number, got {self.cpus}")

    def memswap_total(self) -> int:
        """memory+swap in bytes, -1 for unlimited."""
        if self.memory is None:
            return -1
        if self.memswap in (None, 0):
            return 2 * self.memory
        return self.memswap

    def cpu_quota(self) -> int | None:
        """CFS quota in microseconds per PERIOD_US, None for unlimited."""
        if self.cpus is None:
            return None
        return max(_MIN_QUOTA_US, round(self.cpus * PERIOD_US))

    def pids_max(self) -> int | None:
        return self.pids if self.pids is not None and self.pids > 0 else None


@dataclass(frozen=True)
class Stats:
    memory_usage: int  # bytes
    memory_limit: int | None  # bytes, None when unlimited
    cpu_usage_ns: int
    nr_throttled: int  # CFS periods in which the quota ran out
    throttled_ns: int
    pids_current: int
    pids_refused: int  # forks refused by pids.max (pids.events "max N")
    oom_kills: int


# The seam to the kernel: tests swap these for a fake cgroupfs.
def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _write(path: str, data: str) -> None:
    # One write() per value, as cgroupfs parses each write whole; no O_CREAT, so a missing
    # control file fails instead of turning into a stray regular file.
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def _mkdir(path: str) -> None:
    os.mkdir(path)


def _rmdir(path: str) -> None:
    os.rmdir(path)


def _error(where: str, file: str, op: str, exc: OSError, hint: str = "") -> CgroupError:
    reason = exc.strerror or str(exc)
    return CgroupError(f"{where}: {file}: {op}: {reason}{hint}", errno=exc.errno)


def _keyed(text: str | None) -> dict[str, int]:
    """Parse ``key value`` lines (cpu.stat, memory.events, pids.events, memory.oom_control)."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def _check_name(name: str) -> None:
    if not name or "/" in name or name in (".", ".."):
        raise CgroupError(f"cgroup {name!r}: expected a single path component")


class Cgroup(ABC):
    """One container's cgroup: a directory per v1 hierarchy, or one v2 directory."""

    name: str
    procs_files: list[str]  # every cgroup.procs a new process must join
    paths: list[str]  # every directory of this cgroup
    memory_path: str | None  # where memory.* lives (OOM watching), None without the controller

    def __init__(self, name: str, paths: list[str], memory_path: str | None) -> None:
        self.name = name
        self.paths = paths
        self.procs_files = [os.path.join(p, "cgroup.procs") for p in paths]
        self.memory_path = memory_path
        # Made by this create() call: its limits are the kernel's defaults (none), so an
        # all-None Limits need not be written (a per-start saving of ~0.2 ms on v1).
        self.fresh = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.paths!r})"

    @abstractmethod
    def apply(self, limits: Limits) -> None:
        """Make the limits exactly these; None lifts a limit where the controller exists."""

    @abstractmethod
    def stats(self) -> Stats: ...

    @abstractmethod
    def oom_kills(self) -> int: ...

    @abstractmethod
    def freeze(self, frozen: bool) -> None:
        """Docker's pause/unpause: every process stops being scheduled, nothing is lost."""

    def pids(self) -> list[int]:
        """Processes inside, in the supervisor's pid namespace."""
        found: set[int] = set()
        for path in self.paths:
            found.update(int(p) for p in (self._get(path, "cgroup.procs") or "").split())
        return sorted(found)

    def kill_all(self, timeout: float = 1.0) -> None:
        """SIGKILL every process inside, again until none is left or the timeout passes.

        Re-reading catches children forked between the read and the kill; a process with a
        SIGKILL pending cannot fork, so this converges. Leftovers show up as EBUSY in remove().
        """
        deadline = time.monotonic() + timeout
        delay = 0.001
        # Never ourselves, whatever a confused cgroup.procs says.
        while pids := [p for p in self.pids() if p != os.getpid()]:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                except OSError as exc:
                    raise self._error("cgroup.procs", f"kill {pid}", exc) from exc
            if time.monotonic() >= deadline:
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def remove(self, timeout: float = 2.0) -> None:
        """rmdir every directory, children first; retry EBUSY until the timeout. Missing ok."""
        deadline = time.monotonic() + timeout
        for top in self.paths:
            # A container with its own cgroup namespace may have made sub-cgroups.
            for path, _, _ in list(os.walk(top, topdown=False)):
                self._rmdir(path, deadline)

    def _rmdir(self, path: str, deadline: float) -> None:
        delay = 0.002
        while True:
            try:
                _rmdir(path)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                # EBUSY: processes are still leaving (a killed task lingers until it exits).
                if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                    raise self._error(path, "rmdir", exc) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _error(self, file: str, op: str, exc: OSError) -> CgroupError:
        return _error(f"cgroup {self.name}", file, op, exc)

    def _set(self, path: str, file: str, value: str) -> None:
        try:
            _write(os.path.join(path, file), value)
        except OSError as exc:
            raise self._error(file, f"write {value}", exc) from exc

    def _get(self, path: str | None, file: str) -> str | None:
        """A control file's text, None if it (or the controller) does not exist."""
        if path is None:
            return None
        try:
            return _read(os.path.join(path, file))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error(file, "read", exc) from exc

    def _int(self, path: str | None, file: str) -> int:
        text = (self._get(path, file) or "").strip()
        return int(text) if text.lstrip("-").isdigit() else 0

    def _check_exists(self) -> None:
        # Missing files read as 0 (controllers differ by host); a missing cgroup is an error.
        if self.paths and not any(os.path.isdir(p) for p in self.paths):
            raise CgroupError(f"cgroup {self.name}: {self.paths[0]}: does not exist")


class V1Cgroup(Cgroup):
    """A directory in each mounted v1 hierarchy (cpu and cpuacct may share one)."""

    def __init__(self, name: str, dirs: dict[str, str]) -> None:
        self.dirs = dirs  # controller -> directory, for the controllers that are mounted
        super().__init__(name, list(dict.fromkeys(dirs.values())), dirs.get("memory"))

    def _need(self, controller: str, what: str) -> None:
        if controller not in self.dirs:
            raise CgroupError(
                f"cgroup {self.name}: {what} needs the {controller} controller, "
                "which is not mounted (cgroup v1)"
            )

    def apply(self, limits: Limits) -> None:
        quota, pids = limits.cpu_quota(), limits.pids_max()
        # Check every controller first, so a refused limit leaves the others untouched.
        for controller, wanted in (("memory", limits.memory), ("cpu", quota), ("pids", pids)):
            if wanted is not None:
                self._need(controller, f"a {controller} limit")
        if "memory" in self.dirs:
            self._apply_memory(self.dirs["memory"], limits)
        if "cpu" in self.dirs:
            if quota is None:
                self._set(self.dirs["cpu"], "cpu.cfs_quota_us", "-1")
            else:
                self._set(self.dirs["cpu"], "cpu.cfs_period_us", str(PERIOD_US))
                self._set(self.dirs["cpu"], "cpu.cfs_quota_us", str(quota))
        if "pids" in self.dirs:
            self._set(self.dirs["pids"], "pids.max", "max" if pids is None else str(pids))

    def _apply_memory(self, path: str, limits: Limits) -> None:
        memory = -1 if limits.memory is None else limits.memory
        if self._get(path, "memory.memsw.limit_in_bytes") is None:
            # Swap accounting is off (swapaccount=0): Docker ignores --memory-swap then too.
            self._set(path, "memory.limit_in_bytes", str(memory))
            return
        writes = [
            ("memory.limit_in_bytes", memory),
            ("memory.memsw.limit_in_bytes", limits.memswap_total()),
        ]
        # The kernel keeps memsw >= memory at every step (EINVAL otherwise): when memory
        # goes up, raise memsw first; otherwise lower memory first (runc does the same).
        current = self._int(path, "memory.limit_in_bytes")
        if (memory if memory >= 0 else 1 << 63) > current:
            writes.reverse()
        for file, value in writes:
            self._set(path, file, str(value))

    def stats(self) -> Stats:
        self._check_exists()
        memory, cpu, pids = (self.dirs.get(c) for c in ("memory", "cpu", "pids"))
        limit = self._int(memory, "memory.limit_in_bytes")
        cpu_stat = _keyed(self._get(cpu, "cpu.stat"))
        return Stats(
            memory_usage=self._int(memory, "memory.usage_in_bytes"),
            memory_limit=limit if 0 < limit < _V1_UNLIMITED else None,
            cpu_usage_ns=self._int(self.dirs.get("cpuacct"), "cpuacct.usage"),
            nr_throttled=cpu_stat.get("nr_throttled", 0),
            throttled_ns=cpu_stat.get("throttled_time", 0),
            pids_current=self._int(pids, "pids.current"),
            pids_refused=_keyed(self._get(pids, "pids.events")).get("max", 0),
            oom_kills=self.oom_kills(),
        )

    def oom_kills(self) -> int:
        return _keyed(self._get(self.dirs.get("memory"), "memory.oom_control")).get("oom_kill", 0)

    def freeze(self, frozen: bool) -> None:
        self._need("freezer", "pause")
        self._set(self.dirs["freezer"], "freezer.state", "FROZEN" if frozen else "THAWED")


class V2Cgroup(Cgroup):
    """One directory in the unified hierarchy."""

    def __init__(self, name: str, path: str) -> None:
        self.path = path
        super().__init__(name, [path], path)

    def _need(self, enabled: set[str], controller: str, what: str) -> None:
        if controller in enabled:
            return
        parent = os.path.dirname(self.path)
        have = (self._get(parent, "cgroup.controllers") or "").split()
        raise CgroupError(
            f"cgroup {self.name}: {what} needs the {controller} controller, which is not "
            f"delegated to {parent} (it has: {' '.join(have) or 'none'})"
        )

    def apply(self, limits: Limits) -> None:
        enabled = set((self._get(self.path, "cgroup.controllers") or "").split())
        quota, pids = limits.cpu_quota(), limits.pids_max()
        # Check every controller first, so a refused limit leaves the others untouched.
        for controller, wanted in (("memory", limits.memory), ("cpu", quota), ("pids", pids)):
            if wanted is not None:
                self._need(enabled, controller, f"a {controller} limit")
        if "memory" in enabled:
            memory = limits.memory
            self._set(self.path, "memory.max", "max" if memory is None else str(memory))
            # Absent when swap accounting is off; Docker ignores --memory-swap then too.
            if self._get(self.path, "memory.swap.max") is not None:
                total = limits.memswap_total()
                swap = "max" if memory is None or total < 0 else str(total - memory)
                self._set(self.path, "memory.swap.max", swap)
        if "cpu" in enabled:
            self._set(self.path, "cpu.max", f"{quota or 'max'} {PERIOD_US}")
        if "pids" in enabled:
            self._set(self.path, "pids.max", "max" if pids is None else str(pids))

    def stats(self) -> Stats:
        self._check_exists()
        limit = (self._get(self.path, "memory.max") or "max").strip()
        cpu_stat = _keyed(self._get(self.path, "cpu.stat"))
        return Stats(
            memory_usage=self._int(self.path, "memory.current"),
            memory_limit=int(limit) if limit.isdigit() else None,
            cpu_usage_ns=cpu_stat.get("usage_usec", 0) * 1000,
            nr_throttled=cpu_stat.get("nr_throttled", 0),
            throttled_ns=cpu_stat.get("throttled_usec", 0) * 1000,
            pids_current=self._int(self.path, "pids.current"),
            pids_refused=_keyed(self._get(self.path, "pids.events")).get("max", 0),
            oom_kills=self.oom_kills(),
        )

    def oom_kills(self) -> int:
        return _keyed(self._get(self.path, "memory.events")).get("oom_kill", 0)

    def freeze(self, frozen: bool) -> None:
        self._set(self.path, "cgroup.freeze", "1" if frozen else "0")

    def kill_all(self, timeout: float = 1.0) -> None:
        # cgroup.kill (5.14+) kills atomically, forks included; older kernels get the loop.
        if self._get(self.path, "cgroup.kill") is None:
            super().kill_all(timeout)
        else:
            self._set(self.path, "cgroup.kill", "1")


class CgroupDriver(ABC):
    """Creates and finds container cgroups under the supervisor's own cgroup."""

    version: int

    @abstractmethod
    def create(self, name: str) -> Cgroup:
        """Make the cgroup (reusing a leftover of the same name)."""

    @abstractmethod
    def open(self, name: str) -> Cgroup | None:
        """The existing cgroup of that name, or None."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Names of child cgroups starting with prefix, sorted (the leftover scan)."""


def _children(base: str, prefix: str) -> set[str]:
    try:
        with os.scandir(base) as it:
            return {e.name for e in it if e.is_dir() and e.name.startswith(prefix)}
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise _error("cgroups", base, "list", exc) from exc


def _mkdir_ok(where: str, path: str) -> bool:
    """True if made now, False if it was there (a leftover being reused)."""
    try:
        _mkdir(path)
    except FileExistsError:
        return False
    except OSError as exc:
        raise _error(where, path, "mkdir", exc) from exc
    return True


class V1Driver(CgroupDriver):
    version = 1

    def __init__(self, bases: dict[str, str]) -> None:
        self.bases = bases  # controller -> the supervisor's own directory in that hierarchy

    def __repr__(self) -> str:
        return f"V1Driver({self.bases!r})"

    def _cgroup(self, name: str) -> V1Cgroup:
        _check_name(name)
        return V1Cgroup(name, {c: os.path.join(b, name) for c, b in self.bases.items()})

    def create(self, name: str) -> Cgroup:
        cgroup = self._cgroup(name)
        made = [_mkdir_ok(f"cgroup {name}", path) for path in cgroup.paths]
        cgroup.fresh = all(made)
        return cgroup

    def open(self, name: str) -> Cgroup | None:
        cgroup = self._cgroup(name)
        return cgroup if any(os.path.isdir(p) for p in cgroup.paths) else None

    def list(self, prefix: str) -> list[str]:
        names: set[str] = set()
        for base in dict.fromkeys(self.bases.values()):
            names |= _children(base, prefix)
        return sorted(names)


class V2Driver(CgroupDriver):
    version = 2

    def __init__(self, base: str, *, pid: int | None = None) -> None:
        self.base = base  # the supervisor's own cgroup (the parent of its leaf)
        self._pid = os.getpid() if pid is None else pid
        self._ready = False
        self._lock = threading.Lock()  # create() may run in several worker threads at once

    def __repr__(self) -> str:
        return f"V2Driver({self.base!r})"

    def _prepare(self) -> None:
        """Once: move the supervisor into its leaf, then enable controllers for children."""
        with self._lock:
            if self._ready:
                return
            where = "cgroups"
            try:
                procs = _read(os.path.join(self.base, "cgroup.procs")).split()
                available = _read(os.path.join(self.base, "cgroup.controllers")).split()
                enabled = _read(os.path.join(self.base, "cgroup.subtree_control")).split()
            except OSError as exc:
                raise _error(where, exc.filename or self.base, "read", exc) from exc
            # The root cgroup (no cgroup.type) is exempt from "no internal processes".
            is_root = not os.path.exists(os.path.join(self.base, "cgroup.type"))
            if str(self._pid) in procs and not is_root:
                leaf = os.path.join(self.base, LEAF)
                _mkdir_ok(where, leaf)
                file = os.path.join(leaf, "cgroup.procs")
                try:
                    _write(file, str(self._pid))
                except OSError as exc:
                    raise _error(where, file, f"write {self._pid}", exc) from exc
            missing = [c for c in _V2_CONTROLLERS if c in available and c not in enabled]
            if missing:
                file = os.path.join(self.base, "cgroup.subtree_control")
                value = " ".join(f"+{c}" for c in missing)
                try:
                    _write(file, value)
                except OSError as exc:
                    hint = ""
                    if exc.errno == errno.EBUSY:
                        hint = (
                            f" (other processes share {self.base}; run the supervisor in a "
                            "delegated unit of its own: systemd-run --scope -p Delegate=yes)"
                        )
                    raise _error(where, file, f"write {value}", exc, hint) from exc
            self._ready = True

    def create(self, name: str) -> Cgroup:
        _check_name(name)
        if name == LEAF:
            raise CgroupError(f"cgroup {name}: reserved for the supervisor's own leaf")
        self._prepare()
        cgroup = V2Cgroup(name, os.path.join(self.base, name))
        cgroup.fresh = _mkdir_ok(f"cgroup {name}", cgroup.path)
        # Kill the whole container on OOM, as Docker and runc do on v2.
        if cgroup._get(cgroup.path, "memory.oom.group") is not None:
            cgroup._set(cgroup.path, "memory.oom.group", "1")
        return cgroup

    def open(self, name: str) -> Cgroup | None:
        _check_name(name)
        path = os.path.join(self.base, name)
        return V2Cgroup(name, path) if os.path.isdir(path) else None

    def list(self, prefix: str) -> list[str]:
        return sorted(_children(self.base, prefix) - {LEAF})


# --- detection ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Mount:
    root: str  # the mount's root inside its hierarchy
    point: str
    fstype: str
    options: tuple[str, ...]  # super options: the controllers for v1


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def _parse_mountinfo(text: str) -> list[_Mount]:
    mounts = []
    for line in text.splitlines():
        # id parent major:minor root point options [optional...] - fstype source superoptions
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        if tail[0] in ("cgroup", "cgroup2"):
            options = tuple(tail[2].split(","))
            mounts.append(_Mount(_unescape(fields[3]), _unescape(fields[4]), tail[0], options))
    return mounts


def _parse_self_cgroup(text: str) -> dict[str, str]:
    """controller -> own path; the v2 line ``0::/path`` under the key ``""``."""
    own: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                own[controller] = parts[2]
    return own


def _own_dir(mount: _Mount, own: str) -> str:
    """The directory of cgroup path ``own`` under this mount (which may be a sub-tree)."""
    if mount.root != "/" and (own == mount.root or own.startswith(mount.root + "/")):
        own = own[len(mount.root) :]
    return os.path.normpath(os.path.join(mount.point, own.lstrip("/")))


def _pick(mounts: list[_Mount], own: str) -> _Mount:
    # A hierarchy may be mounted more than once (bind mounts); prefer one that holds us.
    for m in mounts:
        if m.root == "/" or own == m.root or own.startswith(m.root + "/"):
            return m
    return mounts[0]


def _v2_driver(mount: _Mount, own: dict[str, str], self_cgroup: str) -> V2Driver:
    path = own.get("")
    if path is None:
        raise CgroupError(f"cgroups: {self_cgroup}: expected a '0::/path' line, found none")
    base = _own_dir(mount, path)
    # A supervisor started from an old one (exec, fork) already sits in the leaf.
    if os.path.basename(base) == LEAF:
        base = os.path.dirname(base)
    return V2Driver(base)


def detect(
    root: str = "/sys/fs/cgroup",
    mountinfo: str = "/proc/self/mountinfo",
    self_cgroup: str = "/proc/self/cgroup",
) -> CgroupDriver:
    """Pick the driver: v2 if cgroup2 is mounted at ``root``, else v1 (hybrid counts as v1)."""
    try:
        mounts = _parse_mountinfo(_read(mountinfo))
        own = _parse_self_cgroup(_read(self_cgroup))
    except OSError as exc:
        raise _error("cgroups", exc.filename or mountinfo, "read", exc) from exc
    unified = [m for m in mounts if m.fstype == "cgroup2"]
    for m in unified:
        if os.path.normpath(m.point) == os.path.normpath(root):
            return _v2_driver(m, own, self_cgroup)
    bases: dict[str, str] = {}
    for controller in _V1_CONTROLLERS:
        candidates = [m for m in mounts if m.fstype == "cgroup" and controller in m.options]
        if candidates:
            path = own.get(controller, "/")
            bases[controller] = _own_dir(_pick(candidates, path), path)
    if bases:
        return V1Driver(bases)
    if unified:
        # Only a cgroup2 mount elsewhere: odd, but it is the only place with controllers.
        return _v2_driver(unified[0], own, self_cgroup)
    raise CgroupError(f"cgroups: {mountinfo}: no cgroup filesystem is mounted")
