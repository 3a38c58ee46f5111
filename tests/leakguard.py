"""The leak guard: what a privileged test leaves behind fails it.

Compares, before and after a test: mounts, cgroups named supervise-*, network namespaces,
links in the root network namespace, and this process's descendants (zombies included).

Mounts, cgroups and namespaces count only when they name this test run: its pytest temp
folder or a project it made (`OURS`). Two test runs (or a test run and a benchmark) can then
share the machine without flagging each other's objects; links in the root namespace and our
own descendants always count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _mounts() -> set[str]:
    out = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        out.add(f"{fields[4]} ({fields[fields.index('-') + 1]})")
    return out


def _cgroups() -> set[str]:
    found = set()
    base = Path("/sys/fs/cgroup")
    for top in base.iterdir() if base.is_dir() else []:
        stack = [(top, 0)]
        while stack:
            d, depth = stack.pop()
            try:
                children = [c for c in d.iterdir() if c.is_dir()]
            except OSError:
                continue
            for c in children:
                if c.name.startswith("supervise-"):
                    found.add(str(c))
                if depth < 4:
                    stack.append((c, depth + 1))
    return found


def _netns() -> set[str]:
    d = Path("/run/netns")
    return {p.name for p in d.iterdir()} if d.is_dir() else set()


def _links() -> set[str]:
    return {p.name for p in Path("/sys/class/net").iterdir()}


def _descendants() -> set[str]:
    me = os.getpid()
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm_end = stat.rindex(")")
        fields = stat[comm_end + 2:].split()
        ppid = int(fields[1])
        children.setdefault(ppid, []).append((int(entry.name), stat[stat.index("(") + 1:
                                                                     comm_end] + f" {fields[0]}"))
    out, todo = set(), [me]
    while todo:
        for pid, desc in children.get(todo.pop(), []):
            out.add(f"{pid} {desc}")
            todo.append(pid)
    return out


# Fragments that mark an object as this run's: the pytest basetemp and every project name.
OURS: set[str] = set()


def _ours(item: str) -> bool:
    return not OURS or any(fragment in item for fragment in OURS)


@dataclass(frozen=True)
class Snapshot:
    mounts: set[str]
    cgroups: set[str]
    netns: set[str]
    links: set[str]
    processes: set[str]

    @classmethod
    def take(cls) -> Snapshot:
        return cls(_mounts(), _cgroups(), _netns(), _links(), _descendants())

    def leaks_since(self, before: Snapshot) -> list[str]:
        out = []
        for field in ("mounts", "cgroups", "netns", "links", "processes"):
            extra = sorted(getattr(self, field) - getattr(before, field))
            if field in ("mounts", "cgroups", "netns"):
                extra = [item for item in extra if _ours(item)]
            if extra:
                more = f" and {len(extra) - 10} more" if len(extra) > 10 else ""
                out.append(f"{field}: {extra[:10]}{more}")
        return out


def sweep_ours() -> list[str]:
    """At the end of a test run: what a failed test left of *this run's* projects (a
    container whose supervisor died goes on under init), killed by PID and removed, so a
    failure does not leave the machine busy.  Returns what it cleaned."""
    import signal
    import time

    names = [n for n in OURS if "/" not in n]
    found = [c for c in _cgroups() if any(f"/supervise-{n}." in c for n in names)]
    cleaned = []
    killed: set[int] = set()
    for path in found:
        for pid in set(_read_pids(Path(path))) - killed:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
                cleaned.append(f"process {pid} in {path}")
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    for path in sorted(found, key=len, reverse=True):
        while True:
            try:
                os.rmdir(path)
                cleaned.append(f"cgroup {path}")
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
    return cleaned


def _read_pids(cgroup: Path) -> list[int]:
    try:
        return [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []
