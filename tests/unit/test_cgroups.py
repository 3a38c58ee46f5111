"""cgroup drivers against a fake cgroupfs made of plain files (no root needed).

The fake replaces the module's kernel seam (_mkdir, _rmdir, _write, _read) and keeps the
kernel rules the drivers must respect: control files appear on mkdir, v1 memsw >= memory,
v2 "no internal processes", rmdir EBUSY while processes or children remain.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.errors import CgroupError, SupervisorError
from supervisor.linux import cgroups
from supervisor.linux.cgroups import Limits, V1Cgroup, V1Driver, V2Cgroup, V2Driver, detect

MiB = 1 << 20
PID = os.getpid()
V1_UNLIMITED = "9223372036854771712"
V2_ORDER = "cpuset cpu io memory hugetlb pids rdma misc"
SCOPE = "/user.slice/user-0.slice/user@0.service/app.slice/supervise.scope"

V1_FILES = {
    "memory": {
        "memory.limit_in_bytes": V1_UNLIMITED,
        "memory.memsw.limit_in_bytes": V1_UNLIMITED,
        "memory.usage_in_bytes": "0",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    },
    "cpu": {
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "-1",
        "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
    },
    "cpuacct": {"cpuacct.usage": "0"},
    "pids": {"pids.max": "max", "pids.current": "0", "pids.events": "max 0\n"},
}
V2_FILES = {
    "memory": {
        "memory.max": "max",
        "memory.swap.max": "max",
        "memory.current": "0",
        "memory.oom.group": "0",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    },
    "cpu": {"cpu.max": "max 100000"},
    "pids": {"pids.max": "max", "pids.current": "0", "pids.events": "max 0\n"},
}


def _alive(pid: int) -> bool:
    """As the kernel lists cgroup.procs: exited (zombie) processes are gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class FakeCgroupfs:
    """Plain directories and files standing in for cgroupfs, with the kernel's rules."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writes: list[tuple[str, str]] = []  # (file name, value), in order
        self.templates: dict[Path, Callable[[Path], dict[str, str]]] = {}
        self.fail: dict[str, OSError] = {}  # file name -> error for the next write
        self.busy_rmdirs = 0  # rmdir answers EBUSY this many times first
        self._real_read = cgroups._read
        monkeypatch.setattr(cgroups, "_mkdir", self.mkdir)
        monkeypatch.setattr(cgroups, "_rmdir", self.rmdir)
        monkeypatch.setattr(cgroups, "_write", self.write)
        monkeypatch.setattr(cgroups, "_read", self.read)

    def hierarchy(self, mount: Path, files: Callable[[Path], dict[str, str]]) -> None:
        self.templates[mount] = files
        populate(mount, files(mount))

    def mount_of(self, path: Path) -> Path:
        return next(m for m in self.templates if m == path or m in path.parents)

    def mkdir(self, path: str) -> None:
        os.mkdir(path)
        p = Path(path)
        populate(p, self.templates[self.mount_of(p)](p))

    def rmdir(self, path: str) -> None:
        p = Path(path)
        if self.busy_rmdirs:
            self.busy_rmdirs -= 1
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        procs = p / "cgroup.procs"
        if any(c.is_dir() for c in p.iterdir()) or (procs.exists() and self.read(str(procs))):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        for f in p.iterdir():
            f.unlink()
        os.rmdir(path)

    def read(self, path: str) -> str:
        text = self._real_read(path)
        if path.endswith("cgroup.procs"):
            return "".join(f"{p}\n" for p in text.split() if _alive(int(p)))
        return text

    def write(self, path: str, data: str) -> None:
        p = Path(path)
        if not p.exists():  # the kernel never creates a control file
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        self.writes.append((p.name, data))
        if p.name in self.fail:
            raise self.fail.pop(p.name)
        if p.name == "cgroup.procs":
            self._move(p, data)
        elif p.name == "cgroup.subtree_control":
            self._subtree_control(p, data)
        elif p.name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):
            self._v1_memory(p, data)
        else:
            p.write_text(data)

    def _move(self, procs: Path, pid: str) -> None:
        # A process is in exactly one cgroup per hierarchy.
        for other in self.mount_of(procs.parent).rglob("cgroup.procs"):
            other.write_text("".join(f"{p}\n" for p in other.read_text().split() if p != pid))
        if (procs.parent / "cgroup.subtree_control").read_text().split():
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(procs))
        procs.write_text(procs.read_text() + pid + "\n")

    def _subtree_control(self, file: Path, data: str) -> None:
        available = (file.parent / "cgroup.controllers").read_text().split()
        enabled = set(file.read_text().split())
        for token in data.split():
            if token[1:] not in available:
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), str(file))
            (enabled.add if token[0] == "+" else enabled.discard)(token[1:])
        procs = (file.parent / "cgroup.procs").read_text().split()
        if enabled and procs and (file.parent / "cgroup.type").exists():
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(file))
        file.write_text(" ".join(c for c in V2_ORDER.split() if c in enabled))

    def _v1_memory(self, file: Path, data: str) -> None:
        value = V1_UNLIMITED if data == "-1" else data
        memory = file.parent / "memory.limit_in_bytes"
        memsw = file.parent / "memory.memsw.limit_in_bytes"
        if not memsw.exists():  # swap accounting off
            file.write_text(value)
            return
        new = {memory: memory.read_text(), memsw: memsw.read_text(), file: value}
        if int(new[memsw]) < int(new[memory]):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), str(file))
        file.write_text(value)


def populate(path: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (path / name).write_text(text)


def v1_files(controllers: list[str]) -> Callable[[Path], dict[str, str]]:
    def files(_: Path) -> dict[str, str]:
        out = {"cgroup.procs": "", "tasks": ""}
        for c in controllers:
            out.update(V1_FILES[c])
        return out

    return files


def v2_files(root: Path) -> Callable[[Path], dict[str, str]]:
    def files(path: Path) -> dict[str, str]:
        out = {"cgroup.procs": "", "cgroup.subtree_control": "", "cgroup.kill": ""}
        if path == root:
            out["cgroup.controllers"] = V2_ORDER
            return out  # the root cgroup has no cgroup.type and no limit files
        enabled = (path.parent / "cgroup.subtree_control").read_text()
        out["cgroup.controllers"] = enabled
        out["cgroup.type"] = "domain"
        out["cpu.stat"] = "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"
        for c in enabled.split():
            out.update(V2_FILES.get(c, {}))
        if "cpu" in enabled.split():
            out["cpu.stat"] += "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"
        return out

    return files


# --- v2 -------------------------------------------------------------------------------------


def mountinfo_v2(root: Path) -> str:
    return (
        "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
        f"35 24 0:30 / {root} rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2"
        " rw,nsdelegate,memory_recursiveprot\n"
    )


@pytest.fixture
def v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FakeCgroupfs, Path, V2Driver]:
    """A systemd host, the supervisor alone in a delegated scope."""
    fs = FakeCgroupfs(monkeypatch)
    root = tmp_path / "sys/fs/cgroup"
    root.mkdir(parents=True)
    fs.hierarchy(root, v2_files(root))
    path = root
    for part in SCOPE.strip("/").split("/"):
        # systemd enables every controller down to the delegated scope.
        (path / "cgroup.subtree_control").write_text(V2_ORDER)
        path = path / part
        path.mkdir()
        populate(path, v2_files(root)(path))
    (path / "cgroup.procs").write_text(f"{PID}\n")
    (tmp_path / "mountinfo").write_text(mountinfo_v2(root))
    (tmp_path / "cgroup").write_text(f"0::{SCOPE}\n")
    driver = detect(str(root), str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    assert isinstance(driver, V2Driver)
    return fs, path, driver


def test_v2_create_moves_supervisor_to_leaf_then_enables_controllers(
    v2: tuple[FakeCgroupfs, Path, V2Driver],
) -> None:
    fs, scope, driver = v2
    assert driver.version == 2 and driver.base == str(scope)
    cg = driver.create("supervise-p-web")
    assert (scope / "supervisor/cgroup.procs").read_text().split() == [str(PID)]
    assert (scope / "cgroup.procs").read_text() == ""
    assert fs.writes[:3] == [
        ("cgroup.procs", str(PID)),
        ("cgroup.subtree_control", "+memory +cpu +pids"),
        ("memory.oom.group", "1"),
    ]
    assert (scope / "cgroup.subtree_control").read_text() == "cpu memory pids"
    assert (scope / "supervise-p-web/cgroup.controllers").read_text() == "cpu memory pids"
    assert (scope / "supervise-p-web/memory.oom.group").read_text() == "1"
    assert cg.procs_files == [str(scope / "supervise-p-web/cgroup.procs")]
    assert cg.memory_path == str(scope / "supervise-p-web")
    # Once per driver: a second container neither moves nor enables again.
    fs.writes.clear()
    driver.create("supervise-p-db")
    assert fs.writes == [("memory.oom.group", "1")]


def test_v2_create_reuses_leftover_and_skips_enabled(
    v2: tuple[FakeCgroupfs, Path, V2Driver], tmp_path: Path
) -> None:
    fs, scope, driver = v2
    driver.create("supervise-p-web")
    # A restarted supervisor (same scope, its pid already in the leaf).
    fresh = detect(
        str(tmp_path / "sys/fs/cgroup"), str(tmp_path / "mountinfo"), str(tmp_path / "cgroup")
    )
    fs.writes.clear()
    again = fresh.create("supervise-p-web")
    assert isinstance(again, V2Cgroup) and again.path == str(scope / "supervise-p-web")
    # The pid is already in the leaf and the controllers are on: nothing but oom.group.
    assert fs.writes == [("memory.oom.group", "1")]


def test_v2_detect_from_inside_the_leaf_uses_its_parent(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text(mountinfo_v2(Path("/sys/fs/cgroup")))
    (tmp_path / "cgroup").write_text(f"0::{SCOPE}/supervisor\n")
    driver = detect("/sys/fs/cgroup", str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    assert isinstance(driver, V2Driver)
    assert driver.base == "/sys/fs/cgroup" + SCOPE


def test_v2_enable_refused_when_others_share_the_cgroup(
    v2: tuple[FakeCgroupfs, Path, V2Driver],
) -> None:
    _, scope, driver = v2
    (scope / "cgroup.procs").write_text(f"{PID}\n1\n")  # pid 1 is always alive
    with pytest.raises(CgroupError) as exc:
        driver.create("supervise-p-web")
    assert str(exc.value).startswith(
        f"cgroups: {scope}/cgroup.subtree_control: write +memory +cpu +pids: "
        "Device or resource busy (other processes share"
    )
    assert exc.value.errno == errno.EBUSY


def test_v2_apply_writes_exact_files(v2: tuple[FakeCgroupfs, Path, V2Driver]) -> None:
    fs, scope, driver = v2
    cg = driver.create("supervise-p-web")
    d = scope / "supervise-p-web"
    fs.writes.clear()
    cg.apply(Limits(memory=64 * MiB, memswap=96 * MiB, cpus=0.5, pids=16))
    assert fs.writes == [
        ("memory.max", "67108864"),
        ("memory.swap.max", "33554432"),
        ("cpu.max", "50000 100000"),
        ("pids.max", "16"),
    ]
    assert (d / "memory.max").read_text() == "67108864"
    assert (d / "cpu.max").read_text() == "50000 100000"

    cases = [
        (Limits(memory=64 * MiB), "67108864", "67108864"),  # Docker: memswap = 2*memory
        (Limits(memory=64 * MiB, memswap=-1), "67108864", "max"),
        (Limits(memory=64 * MiB, memswap=64 * MiB), "67108864", "0"),
        (Limits(), "max", "max"),
    ]
    for limits, memory, swap in cases:
        cg.apply(limits)
        assert (d / "memory.max").read_text() == memory, limits
        assert (d / "memory.swap.max").read_text() == swap, limits
    # Lifting limits writes the kernel's "unlimited" everywhere.
    assert (d / "cpu.max").read_text() == "max 100000"
    assert (d / "pids.max").read_text() == "max"
    cg.apply(Limits(cpus=2.5, pids=-1))
    assert (d / "cpu.max").read_text() == "250000 100000"
    assert (d / "pids.max").read_text() == "max"
    cg.apply(Limits(cpus=0.001))  # the kernel's minimum quota is 1 ms
    assert (d / "cpu.max").read_text() == "1000 100000"


def test_v2_without_swap_accounting_ignores_memswap(
    v2: tuple[FakeCgroupfs, Path, V2Driver],
) -> None:
    fs, scope, driver = v2
    cg = driver.create("supervise-p-web")
    (scope / "supervise-p-web/memory.swap.max").unlink()
    fs.writes.clear()
    cg.apply(Limits(memory=64 * MiB, memswap=128 * MiB))
    assert ("memory.max", "67108864") in fs.writes
    assert all(f != "memory.swap.max" for f, _ in fs.writes)


def test_v2_missing_controller_fails_only_when_a_limit_needs_it(
    v2: tuple[FakeCgroupfs, Path, V2Driver],
) -> None:
    fs, scope, driver = v2
    (scope / "cgroup.controllers").write_text("cpu pids")
    cg = driver.create("supervise-p-web")
    assert fs.writes[1] == ("cgroup.subtree_control", "+cpu +pids")
    cg.apply(Limits(cpus=1, pids=10))
    with pytest.raises(CgroupError) as exc:
        cg.apply(Limits(memory=64 * MiB))
    assert str(exc.value) == (
        "cgroup supervise-p-web: a memory limit needs the memory controller, "
        f"which is not delegated to {scope} (it has: cpu pids)"
    )


def test_v2_stats_and_oom_kills(v2: tuple[FakeCgroupfs, Path, V2Driver]) -> None:
    _, scope, driver = v2
    cg = driver.create("supervise-p-web")
    populate(
        scope / "supervise-p-web",
        {
            "memory.current": "1234567\n",
            "memory.max": "52428800\n",
            "cpu.stat": "usage_usec 2010000\nuser_usec 1500000\nsystem_usec 510000\n"
            "nr_periods 41\nnr_throttled 40\nthrottled_usec 1990000\nnr_bursts 0\n"
            "burst_usec 0\n",
            "pids.current": "3\n",
            "pids.events": "max 25\n",
            "memory.events": "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 1\n",
        },
    )
    s = cg.stats()
    assert s == cgroups.Stats(
        memory_usage=1234567,
        memory_limit=52428800,
        cpu_usage_ns=2_010_000_000,
        nr_throttled=40,
        throttled_ns=1_990_000_000,
        pids_current=3,
        pids_refused=25,
        oom_kills=1,
    )
    assert cg.oom_kills() == 1
    (scope / "supervise-p-web/memory.max").write_text("max\n")
    assert cg.stats().memory_limit is None


def test_v2_list_open_kill_remove(v2: tuple[FakeCgroupfs, Path, V2Driver]) -> None:
    fs, scope, driver = v2
    for name in ("supervise-p-web", "supervise-p-db", "supervise-q-web"):
        driver.create(name)
    assert driver.list("supervise-p-") == ["supervise-p-db", "supervise-p-web"]
    assert driver.list("") == ["supervise-p-db", "supervise-p-web", "supervise-q-web"]
    assert driver.open("supervise-x") is None
    cg = driver.open("supervise-p-web")
    assert isinstance(cg, V2Cgroup)

    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (scope / "supervise-p-web/cgroup.procs").write_text(f"{sleeper.pid}\n")
        assert cg.pids() == [sleeper.pid]
        with pytest.raises(CgroupError) as exc:
            cg.remove(timeout=0.05)
        assert str(exc.value) == (
            f"cgroup supervise-p-web: {scope}/supervise-p-web: rmdir: Device or resource busy"
        )
        cg.kill_all()  # cgroup.kill present: one write, the kernel does the rest
        assert ("cgroup.kill", "1") in fs.writes
        (scope / "supervise-p-web/cgroup.kill").unlink()  # a kernel before 5.14
        cg.kill_all()
        assert sleeper.wait(timeout=5) == -9
    finally:
        sleeper.kill()
        sleeper.wait()
    assert cg.pids() == []
    cg.remove()
    assert not (scope / "supervise-p-web").exists()
    cg.remove()  # already gone: fine
    assert driver.open("supervise-p-web") is None
    with pytest.raises(CgroupError, match="does not exist"):
        cg.stats()


def test_remove_retries_ebusy_and_removes_children_first(
    v2: tuple[FakeCgroupfs, Path, V2Driver],
) -> None:
    fs, scope, driver = v2
    cg = driver.create("supervise-p-web")
    (scope / "supervise-p-web/cgroup.subtree_control").write_text("memory")
    fs.mkdir(str(scope / "supervise-p-web/init.scope"))  # made by the container itself
    fs.busy_rmdirs = 2
    cg.remove()
    assert not (scope / "supervise-p-web").exists()


def test_write_errors_name_cgroup_file_and_value(
    v2: tuple[FakeCgroupfs, Path, V2Driver],
) -> None:
    fs, _, driver = v2
    cg = driver.create("supervise-p-web")
    fs.fail["memory.max"] = OSError(errno.EBUSY, os.strerror(errno.EBUSY))
    with pytest.raises(SupervisorError) as exc:
        cg.apply(Limits(memory=50 * MiB))
    assert str(exc.value) == (
        "cgroup supervise-p-web: memory.max: write 52428800: Device or resource busy"
    )
    assert isinstance(exc.value.__cause__, OSError)


def test_names_are_single_components(v2: tuple[FakeCgroupfs, Path, V2Driver]) -> None:
    _, _, driver = v2
    for bad in ("", "..", "a/b", "supervisor"):
        with pytest.raises(CgroupError):
            driver.create(bad)


# --- v1 -------------------------------------------------------------------------------------

MEMORY_OWN = "/process_api/1e487c60f0b2fb98b3ec147913c0347d"


def mountinfo_v1(root: Path, comounted: bool) -> str:
    cpu = (
        [f"32 31 0:29 / {root}/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct"]
        if comounted
        else [
            f"32 31 0:29 / {root}/cpu rw,relatime - cgroup cgroup rw,cpu",
            f"33 31 0:30 / {root}/cpuacct rw,relatime - cgroup cgroup rw,cpuacct",
        ]
    )
    return "\n".join(
        [
            f"31 23 0:28 / {root} rw,relatime - tmpfs tmpfs rw,mode=755",
            *cpu,
            f"34 31 0:31 / {root}/cpuset rw,relatime - cgroup cgroup rw,cpuset",
            f"35 31 0:32 / {root}/memory rw,relatime - cgroup cgroup rw,memory",
            f"39 31 0:36 / {root}/pids rw,relatime - cgroup cgroup rw,pids",
            f"40 31 0:37 / {root}/systemd rw,relatime - cgroup cgroup rw,name=systemd",
            f"41 31 0:38 / {root}/unified rw,relatime - cgroup2 cgroup2 rw",
            "",
        ]
    )


def self_cgroup_v1(comounted: bool) -> str:
    cpu = ["1:cpu,cpuacct:/"] if comounted else ["2:cpuacct:/", "1:cpu:/"]
    return "\n".join(
        ["9:name=systemd:/", "8:pids:/", f"4:memory:{MEMORY_OWN}", "3:cpuset:/", *cpu, "0::/", ""]
    )


def make_v1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, comounted: bool
) -> tuple[FakeCgroupfs, Path, V1Driver]:
    fs = FakeCgroupfs(monkeypatch)
    root = tmp_path / "sys/fs/cgroup"
    hierarchies = {"memory": ["memory"], "pids": ["pids"]}
    hierarchies.update(
        {"cpu,cpuacct": ["cpu", "cpuacct"]}
        if comounted
        else {"cpu": ["cpu"], "cpuacct": ["cpuacct"]}
    )
    for dirname, controllers in hierarchies.items():
        (root / dirname).mkdir(parents=True)
        fs.hierarchy(root / dirname, v1_files(controllers))
    own = root / "memory"
    for part in MEMORY_OWN.strip("/").split("/"):
        own = own / part
        fs.mkdir(str(own))
    (tmp_path / "mountinfo").write_text(mountinfo_v1(root, comounted))
    (tmp_path / "cgroup").write_text(self_cgroup_v1(comounted))
    driver = detect(str(root), str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    assert isinstance(driver, V1Driver)
    return fs, root, driver


@pytest.fixture
def v1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FakeCgroupfs, Path, V1Driver]:
    return make_v1(tmp_path, monkeypatch, comounted=False)


@pytest.mark.parametrize("comounted", [False, True])
def test_v1_create_under_own_path_per_controller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, comounted: bool
) -> None:
    _, root, driver = make_v1(tmp_path, monkeypatch, comounted)
    cpu = "cpu,cpuacct" if comounted else "cpu"
    cpuacct = "cpu,cpuacct" if comounted else "cpuacct"
    assert driver.version == 1
    assert driver.bases == {
        "memory": f"{root}/memory{MEMORY_OWN}",
        "cpu": f"{root}/{cpu}",
        "cpuacct": f"{root}/{cpuacct}",
        "pids": f"{root}/pids",
    }
    cg = driver.create("supervise-p-web")
    assert isinstance(cg, V1Cgroup)
    expected = [f"{root}/memory{MEMORY_OWN}", f"{root}/{cpu}"]
    expected += [] if comounted else [f"{root}/cpuacct"]
    expected += [f"{root}/pids"]
    assert cg.procs_files == [f"{d}/supervise-p-web/cgroup.procs" for d in expected]
    assert all(Path(p).is_file() for p in cg.procs_files)
    cg.apply(Limits(memory=64 * MiB, cpus=0.5, pids=16))
    cpu_dir = root / cpu / "supervise-p-web"
    assert (cpu_dir / "cpu.cfs_period_us").read_text() == "100000"
    assert (cpu_dir / "cpu.cfs_quota_us").read_text() == "50000"
    assert (root / "pids/supervise-p-web/pids.max").read_text() == "16"
    assert driver.create("supervise-p-web").paths == cg.paths  # leftover: reused


def test_v1_memsw_order_raising_and_lowering(v1: tuple[FakeCgroupfs, Path, V1Driver]) -> None:
    fs, root, driver = v1
    cg = driver.create("supervise-p-web")
    d = root / f"memory{MEMORY_OWN}/supervise-p-web"
    mem, memsw = "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"

    def memory_writes(limits: Limits) -> list[tuple[str, str]]:
        fs.writes.clear()
        cg.apply(limits)
        return [w for w in fs.writes if w[0].startswith("memory.")]

    # From unlimited, a limit is a lowering: memory first.
    assert memory_writes(Limits(memory=64 * MiB, memswap=128 * MiB)) == [
        (mem, "67108864"),
        (memsw, "134217728"),
    ]
    # Raising memory above the old memsw: memsw first.
    assert memory_writes(Limits(memory=256 * MiB, memswap=512 * MiB)) == [
        (memsw, "536870912"),
        (mem, "268435456"),
    ]
    # Lowering both: memory first; memswap None -> Docker's 2*memory.
    assert memory_writes(Limits(memory=32 * MiB)) == [(mem, "33554432"), (memsw, "67108864")]
    assert memory_writes(Limits(memory=32 * MiB, memswap=-1)) == [(mem, "33554432"), (memsw, "-1")]
    assert memory_writes(Limits(memory=16 * MiB, memswap=16 * MiB)) == [
        (mem, "16777216"),
        (memsw, "16777216"),
    ]
    # Lifting the limit is raising: memsw first.
    assert memory_writes(Limits()) == [(memsw, "-1"), (mem, "-1")]
    assert (d / mem).read_text() == (d / memsw).read_text() == V1_UNLIMITED


def test_fake_kernel_refuses_the_wrong_order(v1: tuple[FakeCgroupfs, Path, V1Driver]) -> None:
    fs, root, driver = v1
    driver.create("supervise-p-web").apply(Limits(memory=64 * MiB, memswap=64 * MiB))
    d = root / f"memory{MEMORY_OWN}/supervise-p-web"
    with pytest.raises(OSError) as exc:
        fs.write(str(d / "memory.limit_in_bytes"), str(128 * MiB))
    assert exc.value.errno == errno.EINVAL


def test_v1_without_swap_accounting_ignores_memswap(
    v1: tuple[FakeCgroupfs, Path, V1Driver],
) -> None:
    fs, root, driver = v1
    cg = driver.create("supervise-p-web")
    (root / f"memory{MEMORY_OWN}/supervise-p-web/memory.memsw.limit_in_bytes").unlink()
    fs.writes.clear()
    cg.apply(Limits(memory=64 * MiB, memswap=128 * MiB))
    assert [w for w in fs.writes if w[0].startswith("memory.")] == [
        ("memory.limit_in_bytes", "67108864")
    ]


def test_v1_error_message(v1: tuple[FakeCgroupfs, Path, V1Driver]) -> None:
    fs, _, driver = v1
    cg = driver.create("supervise-p-web")
    fs.fail["memory.limit_in_bytes"] = OSError(errno.EBUSY, os.strerror(errno.EBUSY))
    with pytest.raises(CgroupError) as exc:
        cg.apply(Limits(memory=50 * MiB))
    assert str(exc.value) == (
        "cgroup supervise-p-web: memory.limit_in_bytes: write 52428800: Device or resource busy"
    )
    assert exc.value.errno == errno.EBUSY


def test_v1_missing_controller_fails_only_when_asked(
    v1: tuple[FakeCgroupfs, Path, V1Driver],
) -> None:
    fs, _, driver = v1
    without_pids = V1Driver({c: b for c, b in driver.bases.items() if c != "pids"})
    cg = without_pids.create("supervise-p-web")
    cg.apply(Limits(memory=64 * MiB, cpus=1))
    fs.writes.clear()
    with pytest.raises(CgroupError) as exc:
        cg.apply(Limits(memory=32 * MiB, pids=10))
    assert str(exc.value) == (
        "cgroup supervise-p-web: a pids limit needs the pids controller, "
        "which is not mounted (cgroup v1)"
    )
    assert fs.writes == []  # refused before touching anything


def test_v1_stats_list_open_remove(v1: tuple[FakeCgroupfs, Path, V1Driver]) -> None:
    _, root, driver = v1
    cg = driver.create("supervise-p-web")
    driver.create("supervise-p-db")
    driver.create("other")
    assert driver.list("supervise-p-") == ["supervise-p-db", "supervise-p-web"]
    memory = root / f"memory{MEMORY_OWN}/supervise-p-web"
    populate(
        memory,
        {
            "memory.usage_in_bytes": "4329472\n",
            "memory.limit_in_bytes": "67108864\n",
            "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        },
    )
    populate(root / "cpuacct/supervise-p-web", {"cpuacct.usage": "2010000000\n"})
    populate(
        root / "cpu/supervise-p-web",
        {"cpu.stat": "nr_periods 41\nnr_throttled 40\nthrottled_time 1990000000\n"},
    )
    populate(root / "pids/supervise-p-web", {"pids.current": "1\n", "pids.events": "max 25\n"})
    assert cg.stats() == cgroups.Stats(
        memory_usage=4329472,
        memory_limit=67108864,
        cpu_usage_ns=2_010_000_000,
        nr_throttled=40,
        throttled_ns=1_990_000_000,
        pids_current=1,
        pids_refused=25,
        oom_kills=2,
    )
    (memory / "memory.limit_in_bytes").write_text(V1_UNLIMITED)
    assert cg.stats().memory_limit is None
    assert cg.memory_path == str(memory)

    opened = driver.open("supervise-p-web")
    assert opened is not None and opened.paths == cg.paths
    (root / "pids/supervise-p-web/cgroup.procs").write_text("1\n")
    assert cg.pids() == [1]
    with pytest.raises(CgroupError, match="rmdir: Device or resource busy"):
        cg.remove(timeout=0.02)
    (root / "pids/supervise-p-web/cgroup.procs").write_text("")
    cg.remove()
    assert all(not Path(p).exists() for p in cg.paths)
    assert driver.open("supervise-p-web") is None
    assert driver.list("supervise-p-") == ["supervise-p-db"]


# --- detect ---------------------------------------------------------------------------------


def _detect(tmp_path: Path, mountinfo: str, self_cgroup: str) -> cgroups.CgroupDriver:
    (tmp_path / "mountinfo").write_text(mountinfo)
    (tmp_path / "cgroup").write_text(self_cgroup)
    return detect("/sys/fs/cgroup", str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))


def test_detect_pure_v2(tmp_path: Path) -> None:
    driver = _detect(tmp_path, mountinfo_v2(Path("/sys/fs/cgroup")), f"0::{SCOPE}\n")
    assert isinstance(driver, V2Driver) and driver.version == 2
    assert driver.base == "/sys/fs/cgroup" + SCOPE


def test_detect_hybrid_is_v1(tmp_path: Path) -> None:
    driver = _detect(tmp_path, mountinfo_v1(Path("/sys/fs/cgroup"), False), self_cgroup_v1(False))
    assert isinstance(driver, V1Driver) and driver.version == 1
    assert driver.bases["memory"] == "/sys/fs/cgroup/memory" + MEMORY_OWN
    assert driver.bases["cpu"] == "/sys/fs/cgroup/cpu"


def test_detect_v1_without_unified_and_comounted(tmp_path: Path) -> None:
    mountinfo = "".join(
        line + "\n"
        for line in mountinfo_v1(Path("/sys/fs/cgroup"), True).splitlines()
        if "cgroup2" not in line
    )
    driver = _detect(tmp_path, mountinfo, self_cgroup_v1(True).replace("0::/\n", ""))
    assert isinstance(driver, V1Driver)
    assert driver.bases["cpu"] == driver.bases["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"


def test_detect_v1_mount_of_a_subtree(tmp_path: Path) -> None:
    # Inside a Docker container without a cgroup namespace: the mount's root is our cgroup.
    own = "/docker/0123abcd"
    mountinfo = (
        f"40 31 0:32 {own} /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n"
        f"41 31 0:33 {own} /sys/fs/cgroup/pids ro,nosuid - cgroup cgroup rw,pids\n"
    )
    driver = _detect(tmp_path, mountinfo, f"5:memory:{own}\n4:pids:{own}\n")
    assert isinstance(driver, V1Driver)
    assert driver.bases == {"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"}


def test_detect_escaped_mount_point(tmp_path: Path) -> None:
    mountinfo = "35 24 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    mountinfo = mountinfo.replace("/sys/fs/cgroup", r"/sys/fs/cgroup\040x")
    (tmp_path / "mountinfo").write_text(mountinfo)
    (tmp_path / "cgroup").write_text("0::/\n")
    driver = detect("/sys/fs/cgroup x", str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    assert isinstance(driver, V2Driver) and driver.base == "/sys/fs/cgroup x"


def test_detect_errors(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="no cgroup filesystem is mounted"):
        _detect(tmp_path, "22 1 254:1 / / rw - ext4 /dev/vda1 rw\n", "0::/\n")
    with pytest.raises(CgroupError, match=r"expected a '0::/path' line"):
        _detect(tmp_path, mountinfo_v2(Path("/sys/fs/cgroup")), "1:name=systemd:/\n")
    with pytest.raises(CgroupError, match="No such file or directory"):
        detect("/sys/fs/cgroup", str(tmp_path / "missing"), str(tmp_path / "cgroup"))


def test_limits_validation() -> None:
    assert Limits(memory=100).memswap_total() == 200
    assert Limits(memory=100, memswap=0).memswap_total() == 200
    assert Limits(memory=100, memswap=-1).memswap_total() == -1
    assert Limits().memswap_total() == -1
    assert Limits(pids=0).pids_max() is None
    assert Limits(cpus=1.5).cpu_quota() == 150000
    for bad in (
        {"memory": 0},
        {"memswap": 100},
        {"memory": 100, "memswap": 50},
        {"cpus": 0},
    ):
        with pytest.raises(CgroupError, match=r"^limits: (memory|memswap|cpus): "):
            Limits(**bad)
