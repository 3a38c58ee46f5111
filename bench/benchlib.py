"""Helpers shared by the benchmarks in bench/ (stdlib only; imported as `benchlib` because
`python3 bench/NAME.py` puts bench/ first on sys.path).

Everything a benchmark makes lives in one temporary folder (the busybox rootfs, the private
SUPERVISE_STATE_DIR / SUPERVISE_RUN_DIR, the peers' bundles, state dirs and lxc configs); what
the peer tools insist on writing elsewhere (/run/lxc, /run/crun, /run/runc, /run/containers,
/dev/shm/libpod_lock, `lxc.pivot` and `libpod_parent` cgroups) is snapshotted first and
removed afterwards if the run made it.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
BUSYBOX = shutil.which("busybox") or "/usr/bin/busybox"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP2_HYBRID = CGROUP_ROOT / "unified"
# Directories the peer tools create outside our temp dir even with private state dirs.
PEER_RUN_DIRS = (Path("/run/lxc"), Path("/run/runc"), Path("/run/crun"),
                 Path("/run/containers"))
PEER_CGROUP_WORDS = ("lxc", "runc", "crun", "libpod")
# Parent cgroups the peers create under every hierarchy whatever their container's name
# (podman's cgroupfs manager also puts conmon in `libpod_parent/conmon`).
GENERIC_PEER_CGROUPS = ("lxc.pivot", "libpod_parent")
# podman's SHM lock file, made by the first podman command even with a private store.
PEER_FILES = (Path("/dev/shm/libpod_lock"),)


def require_root() -> None:
    if os.geteuid() != 0:
        sys.exit("this benchmark needs root (namespaces, cgroups, mounts)")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def interruptible() -> None:
    """Ctrl-C and SIGTERM both raise KeyboardInterrupt, so that cleanup runs (a shell without
    job control starts background commands with SIGINT ignored; a kill sends SIGTERM)."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def uninterruptible() -> None:
    """For the cleanup: a second Ctrl-C must not cut it short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def build_busybox_rootfs(root: Path) -> None:
    """The tests' busybox tree (tests/rootfs.py), so benchmarks and tests run the same."""
    if str(REPO_DIR) not in sys.path:
        sys.path.insert(0, str(REPO_DIR))
    from tests.rootfs import build_busybox_rootfs as build

    build(root)


# -- statistics and output ------------------------------------------------------------------

def summary(values_ms: Sequence[float]) -> dict[str, float]:
    """min, median, p90 (inclusive quantile), max and n of a list of milliseconds."""
    xs = sorted(values_ms)
    if not xs:
        return {"n": 0}
    p90 = statistics.quantiles(xs, n=10, method="inclusive")[-1] if len(xs) > 1 else xs[0]
    return {"n": len(xs), "min": xs[0], "median": statistics.median(xs), "p90": p90,
            "max": xs[-1], "mean": statistics.fmean(xs)}


def print_table(headers: Sequence[str], rows: Iterable[Sequence[str]],
                right: Sequence[bool] | None = None) -> None:
    rows = [list(r) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    align = right or [False] + [True] * (len(headers) - 1)

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if a else c.ljust(w)
                         for c, w, a in zip(cells, widths, align, strict=True)).rstrip()

    print(fmt(headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(fmt(r))


def write_results(name: str, data: dict[str, object]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def progress(text: str, *, final: bool = False) -> None:
    """One status line on stderr: rewritten in place on a terminal, plain lines otherwise."""
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + text + ("\n" if final else ""))
    else:
        sys.stderr.write(text + "\n")
    sys.stderr.flush()


# -- the machine ----------------------------------------------------------------------------

def tool_version(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"


def cgroup_mode() -> str:
    fstypes: dict[str, str] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype in ("cgroup", "cgroup2"):
            fstypes[fields[4]] = fstype
    if fstypes.get(str(CGROUP_ROOT)) == "cgroup2":
        return "v2"
    if "cgroup2" in fstypes.values():
        where = [p for p, t in fstypes.items() if t == "cgroup2"]
        return f"v1 hybrid (cgroup2 at {', '.join(where)})"
    return "v1"


def git_state() -> str:
    """The commit measured, and whether supervisor/ had uncommitted changes (read only)."""
    try:
        head = subprocess.run(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_DIR), "status", "--porcelain", "--",
                                "supervisor"], capture_output=True, text=True).stdout
    except OSError:
        return "?"
    return head + (" + uncommitted changes in supervisor/" if dirty.strip() else "")


def machine_info() -> dict[str, object]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "kernel": platform.release(), "cpus": os.cpu_count(), "cpu_model": cpu,
        "mem_gib": round(mem_kb / 1024 / 1024, 1), "cgroups": cgroup_mode(),
        "python": platform.python_version(), "loadavg_start": os.getloadavg(),
        "git": git_state(),
    }


class CpuMeter:
    """How busy the machine was meanwhile with work that is not ours: all CPUs' busy time
    (/proc/stat) minus this process's and its reaped descendants' CPU time.  Kernel work
    done for us in kworkers (namespace and cgroup teardown) counts as "other" too, so this
    over-estimates a little; steal time is the hypervisor's."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float, float]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
        t = os.times()
        ours = t.user + t.system + t.children_user + t.children_system
        return (time.monotonic(), (user + nice + system + irq + softirq) / hz, steal / hz,
                ours)

    def stop(self) -> dict[str, float]:
        end = self._read()
        wall = end[0] - self.start[0]
        cpus = os.cpu_count() or 1
        busy, steal, ours = (end[i] - self.start[i] for i in (1, 2, 3))
        return {"wall_s": round(wall, 1),
                "other_busy_pct": round(100 * max(busy - ours, 0) / (wall * cpus), 1),
                "ours_pct": round(100 * ours / (wall * cpus), 1),
                "steal_pct": round(100 * steal / (wall * cpus), 1)}


# -- processes and memory -------------------------------------------------------------------

def proc_mem(pid: int) -> dict[str, int]:
    """VmRSS (status) and Rss/Pss/Private/... (smaps_rollup) of a process, in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "RssAnon:", "RssFile:", "VmHWM:")):
                key, value = line.split()[:2]
                out[key.rstrip(":")] = int(value)
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB" and parts[0].rstrip(":") in (
                    "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Shared_Dirty"):
                out[parts[0].rstrip(":")] = int(parts[1])
    out["Private"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, comm) for every process."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        end = stat.rindex(")")
        table[int(entry)] = (int(stat[end + 2:].split()[1]), stat[stat.index("(") + 1:end])
    return table


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, comm) of every descendant of pid, zombies included."""
    children: dict[int, list[tuple[int, str]]] = {}
    for p, (ppid, comm) in process_table().items():
        children.setdefault(ppid, []).append((p, comm))
    out: list[tuple[int, str]] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child[0])
    return sorted(out)


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (/proc/PID/stat fields 14 and 15), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes_mentioning(words: Sequence[str], exclude: Iterable[int] = ()) -> list[str]:
    """Processes whose command line or cgroup paths contain one of `words` (a detached
    supervisor, a conmon, a container's processes are not our descendants)."""
    skip = {os.getpid(), *exclude}
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{entry}/cgroup") as f:
                cgroups = f.read()
        except OSError:
            continue
        if any(w in cmdline or w in cgroups for w in words):
            out.append(f"process {entry} ({cmdline[:80] or '?'})")
    return out


def pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


# -- leftovers ------------------------------------------------------------------------------

def _cgroup_dirs(max_depth: int = 3) -> set[str]:
    """cgroup directories whose name mentions supervise, lxc, runc or crun."""
    found: set[str] = set()
    if not CGROUP_ROOT.is_dir():
        return found
    stack = [(h, 0) for h in CGROUP_ROOT.iterdir() if h.is_dir()]
    while stack:
        d, depth = stack.pop()
        try:
            subdirs = [e for e in os.scandir(d) if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        for e in subdirs:
            low = e.name.lower()
            if "supervise" in low or any(w in low for w in PEER_CGROUP_WORDS):
                found.add(e.path)
            if depth < max_depth:
                stack.append((Path(e.path), depth + 1))
    return found


def _run_dir_entries() -> set[str]:
    out: set[str] = set()
    for top in PEER_RUN_DIRS:
        if top.exists():
            out.add(str(top))
            for dirpath, dirnames, filenames in os.walk(top):
                out.update(os.path.join(dirpath, n) for n in dirnames + filenames)
    return out


def _mounts(words: Sequence[str]) -> set[str]:
    out = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if any(w in point for w in words):
            out.add(point)
    return out


class HostSnapshot:
    """What exists before a benchmark, so that afterwards only this run's own leftovers are
    removed (`cleanup_peer_dirs`) and reported (`leftovers`).  The host may be shared: other
    work's supervise-* cgroups come and go meanwhile, so only names carrying one of `tags`
    (our project, our peer container names) and the peers' generic `lxc.pivot` and
    `libpod_parent` count.  Peer containers whose name is only known later (podman's id) are
    added with `add_tag`."""

    def __init__(self, workdir: Path, tags: Sequence[str]) -> None:
        self.workdir = workdir
        self.tags = tuple(tags)
        self.cgroups = _cgroup_dirs()
        self.run_entries = _run_dir_entries()
        self.files = {f for f in PEER_FILES if f.exists()}
        self.mount_words = (*self.tags, str(workdir))
        self.mounts = _mounts(self.mount_words)

    def add_tag(self, tag: str) -> None:
        self.tags = (*self.tags, tag)

    def _ours(self, path: str) -> bool:
        name = os.path.basename(path)
        return name in GENERIC_PEER_CGROUPS or any(t in name for t in self.tags)

    def _new_files(self) -> list[Path]:
        return [f for f in PEER_FILES if f.exists() and f not in self.files]

    def _new_cgroups(self) -> list[str]:
        return sorted(p for p in _cgroup_dirs() - self.cgroups if self._ours(p))

    def cleanup_peer_dirs(self) -> list[str]:
        """Removes the empty peer cgroups (lxc.pivot...) and /run/{lxc,runc,crun} entries
        this run made; returns what could not be removed.  The runtime's own supervise-*
        cgroups are never touched: `leftovers` reports them."""
        failed: list[str] = []
        for path in sorted(self._new_cgroups(), key=len, reverse=True):
            if "supervise" in os.path.basename(path):
                continue
            try:
                if os.path.basename(path) == "libpod_parent":
                    with contextlib.suppress(FileNotFoundError):
                        os.rmdir(os.path.join(path, "conmon"))
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                failed.append(f"{path}: {e.strerror}")
        ours = str(self.workdir).lstrip("/")
        for path in sorted(_run_dir_entries() - self.run_entries, key=len, reverse=True):
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rmdir(path)  # only if empty: another user's lock dir stays
                elif ours in path:  # lxc's lock file /run/lxc/lock/<our lxcpath>/.<name>
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno != errno.ENOTEMPTY:
                    failed.append(f"{path}: {e.strerror}")
        for f in self._new_files():
            try:
                f.unlink()
            except OSError as e:
                failed.append(f"{f}: {e.strerror}")
        return failed

    def leftovers(self, own_pid: int | None = None) -> list[str]:
        """This run's cgroups, /run entries, mounts still there, and our descendants."""
        out = [f"cgroup {p}" for p in self._new_cgroups()]
        out += [f"run entry {p}" for p in sorted(_run_dir_entries() - self.run_entries)]
        out += [f"file {f}" for f in self._new_files()]
        out += [f"mount {p}" for p in sorted(_mounts(self.mount_words) - self.mounts)]
        if own_pid is not None:
            out += [f"process {p} ({c})" for p, c in descendants(own_pid)]
        return out


def finish(workdir: Path, snapshot: HostSnapshot, sv: Supervise | None,
           words: Sequence[str]) -> list[str]:
    """The end of every benchmark: a supervisor left by an error or a Ctrl-C brought down,
    the peers' dirs and the workdir removed; what is left is returned, one line each
    (`words` name this run's processes)."""
    if sv is not None and sv.pid() is not None:
        sv.down()
    failed = snapshot.cleanup_peer_dirs()
    remove_workdir(workdir)
    leftovers = snapshot.leftovers(os.getpid()) + [f"could not remove {f}" for f in failed]
    return leftovers + processes_mentioning([*words, str(workdir)])


def remove_workdir(path: Path) -> None:
    """rm -rf, also through overlay work dirs (whose `work/work` is mode 000)."""
    if not path.exists():
        return
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if not os.path.islink(full):
                try:
                    os.chmod(full, 0o700)
                except OSError:
                    pass
    shutil.rmtree(path, ignore_errors=True)


def ms(ns: int) -> float:
    return ns / 1e6


# -- a detached supervisor, driven through the CLI ------------------------------------------

class Supervise:
    """The `supervise` CLI for one project, with a private SUPERVISE_STATE_DIR and
    SUPERVISE_RUN_DIR under `workdir`.  Runs `python -m supervisor` with this interpreter: the
    same code as the `supervise` script, without the pyenv shim's start-up time.  The commands
    run in `workdir`, not the repo, so that PYTHONPATH can point at another copy of the code
    (`git archive COMMIT supervisor | tar -x -C DIR`: measure a commit, not the work tree)."""

    def __init__(self, workdir: Path, project: str) -> None:
        self.workdir = workdir
        self.project = project
        self.state_dir = workdir / "state"
        self.run_dir = workdir / "run"
        self.env = dict(os.environ, SUPERVISE_STATE_DIR=str(self.state_dir),
                        SUPERVISE_RUN_DIR=str(self.run_dir))
        self.env.pop("SUPERVISE_PROJECT", None)
        self.started_pids: list[int] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "supervisor", "-p", self.project, *args]

    def cli(self, *args: str, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL, cwd=self.workdir)
        if check and r.returncode != 0:
            raise RuntimeError(f"supervise {' '.join(args)}: exit {r.returncode}: "
                               + " ".join((r.stderr or r.stdout).split())[:300])
        return r

    def up(self, stack_file: Path) -> subprocess.CompletedProcess[str]:
        """`up -d`: returns once every container has started (or, with a supervisor already
        running, once the edited stack has been applied)."""
        r = self.cli("up", "-d", str(stack_file))
        pid = self.pid()
        if pid is not None and pid not in self.started_pids:
            self.started_pids.append(pid)
        return r

    def code(self) -> str:
        """Where the `supervisor` package these commands run comes from."""
        r = subprocess.run([sys.executable, "-c", "import os, supervisor; "
                            "print(os.path.dirname(os.path.abspath(supervisor.__file__)))"],
                           env=self.env, cwd=self.workdir, capture_output=True, text=True,
                           timeout=60)
        return r.stdout.strip() or "?"

    def describe_code(self) -> str:
        """git_state() for the work tree; the folder, for a copy elsewhere."""
        where = self.code()
        if where == str(REPO_DIR / "supervisor"):
            return git_state()
        return f"supervisor/ from {where} (not the work tree)"

    def pid(self) -> int | None:
        try:
            return int((self.run_dir / self.project / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def init_processes(self) -> tuple[int | None, list[int]]:
        """The fork server (`linux/init.py`, the supervisor's child in its pid namespace),
        and the processes with the same command line in a pid namespace of their own: a
        warm PID 1 cloned ahead of the next start, waiting for its spec."""
        pid = self.pid()
        if pid is None:
            return None, []
        server, warm = None, []
        ns = pid_namespace(pid)
        for child, _comm in descendants(pid):
            try:
                with open(f"/proc/{child}/cmdline", "rb") as f:
                    if b"linux/init.py" not in f.read():
                        continue
            except OSError:
                continue
            if pid_namespace(child) == ns and server is None:
                server = child
            elif pid_namespace(child) != ns:
                warm.append(child)
        return server, warm

    def fork_server_pid(self) -> int | None:
        return self.init_processes()[0]

    def events(self, since: float = 0.0) -> list[dict[str, Any]]:
        """The event history from `since` until now (`events --format json --until`)."""
        r = self.cli("events", "--format", "json", "--since", f"{since:.6f}",
                     "--until", f"{time.time():.6f}", timeout=60)
        return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]

    def down(self) -> list[str]:
        """`down -v`; a supervisor that does not go away is sent SIGTERM, then SIGKILL (only
        the supervisors this object started, by pid).  Returns what went wrong."""
        problems: list[str] = []
        pid = self.pid()
        if pid is not None and pid not in self.started_pids:
            self.started_pids.append(pid)
        try:
            r = self.cli("down", "-v", check=False, timeout=120)
            if r.returncode != 0:
                problems.append(f"down -v: exit {r.returncode}: {r.stderr.strip()[:200]}")
        except subprocess.TimeoutExpired:
            problems.append("down -v: timed out")
        for p in self.started_pids:
            # `down` returns once the project's lock is released; the process then still
            # closes its fork server and tears the interpreter down.
            deadline = time.monotonic() + 10
            while self._is_ours(p) and time.monotonic() < deadline:
                time.sleep(0.02)
            if not self._is_ours(p):
                continue
            problems.append(f"supervisor {p} still running after down: SIGTERM")
            os.kill(p, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while self._is_ours(p) and time.monotonic() < deadline:
                time.sleep(0.1)
            if self._is_ours(p):
                os.kill(p, signal.SIGKILL)
        return problems

    def _is_ours(self, pid: int) -> bool:
        """pid is alive (not a zombie) and still this project's `_serve` process."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            return False
        return _alive(pid) and b"_serve" in argv and self.project.encode() in argv


def _alive(pid: int) -> bool:
    """True while pid runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
