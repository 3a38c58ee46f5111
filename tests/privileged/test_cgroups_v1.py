"""The v1 cgroup driver against the real kernel (root; this dev VM is v1 hybrid).

Every test makes its own ``supervise-test-<random>`` cgroup and removes it in a finalizer,
even on failure; the module's last check fails if any such cgroup is left anywhere.
"""

from __future__ import annotations

import errno
import glob
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor.linux.cgroups import Cgroup, CgroupDriver, Limits, V1Cgroup, detect

pytestmark = pytest.mark.privileged
MiB = 1 << 20
PREFIX = "supervise-test-"


def _needs_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("needs root; in CI a privileged test fails instead of skipping")
        pytest.skip("needs root")


@pytest.fixture(scope="module")
def driver() -> Iterator[CgroupDriver]:
    _needs_root()
    driver = detect()
    if driver.version != 1:
        pytest.skip(f"host is cgroup v{driver.version}, these tests drive v1")
    yield driver
    leftovers = driver.list(PREFIX) + glob.glob(f"/sys/fs/cgroup/*/{PREFIX}*")
    assert leftovers == [], "cgroups left behind"


@pytest.fixture
def cgroup(driver: CgroupDriver) -> Iterator[tuple[Cgroup, list[subprocess.Popen[bytes]]]]:
    """A fresh cgroup and a list for the processes started in it; all gone afterwards."""
    name = PREFIX + secrets.token_hex(4)
    procs: list[subprocess.Popen[bytes]] = []
    cg = driver.create(name)
    try:
        yield cg, procs
    finally:
        try:
            cg.kill_all()
        finally:
            for p in procs:
                p.kill()
                p.wait()
            cg.remove()


def spawn(cg: Cgroup, procs: list[subprocess.Popen[bytes]], *argv: str) -> int:
    """Start argv inside the cgroup: the child joins before exec, as the container helper."""

    def join() -> None:
        for file in cg.procs_files:
            Path(file).write_text(str(os.getpid()))

    p = subprocess.Popen(argv, preexec_fn=join, stderr=subprocess.DEVNULL)
    procs.append(p)
    return p.pid


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def read(cg: V1Cgroup, controller: str, file: str) -> str:
    return Path(cg.dirs[controller], file).read_text().strip()


def test_limits_follow_the_memsw_order_on_the_kernel(
    cgroup: tuple[Cgroup, list[subprocess.Popen[bytes]]],
) -> None:
    cg, _ = cgroup
    assert isinstance(cg, V1Cgroup)
    assert all(Path(d).is_dir() for d in cg.paths)
    has_memsw = Path(cg.dirs["memory"], "memory.memsw.limit_in_bytes").exists()
    # Lowering from unlimited, raising above the old memsw, lowering both, lifting: each is
    # EINVAL if the two memory files are written in the wrong order.
    unlimited = None
    steps = [  # (limits, expected memsw; None = unlimited)
        (Limits(memory=64 * MiB, memswap=128 * MiB), 128 * MiB),
        (Limits(memory=256 * MiB, memswap=512 * MiB), 512 * MiB),
        (Limits(memory=32 * MiB), 64 * MiB),  # Docker's default: 2 * memory
        (Limits(memory=16 * MiB, memswap=16 * MiB), 16 * MiB),
        (Limits(memory=48 * MiB, memswap=-1), unlimited),
        (Limits(memory=8 * MiB, memswap=8 * MiB), 8 * MiB),
    ]
    for limits, expected in steps:
        cg.apply(limits)
        assert int(read(cg, "memory", "memory.limit_in_bytes")) == limits.memory
        if has_memsw:
            memsw = int(read(cg, "memory", "memory.memsw.limit_in_bytes"))
            assert memsw == expected if expected is not None else memsw > 1 << 62
    if has_memsw:
        # The rule the order exists for: memory above memsw is refused.
        with pytest.raises(OSError) as exc:
            Path(cg.dirs["memory"], "memory.limit_in_bytes").write_text(str(16 * MiB))
        assert exc.value.errno == errno.EINVAL
    cg.apply(Limits(cpus=0.5, pids=16))
    assert read(cg, "cpu", "cpu.cfs_period_us") == "100000"
    assert read(cg, "cpu", "cpu.cfs_quota_us") == "50000"
    assert read(cg, "pids", "pids.max") == "16"
    assert int(read(cg, "memory", "memory.limit_in_bytes")) > 1 << 62
    cg.apply(Limits())
    assert read(cg, "cpu", "cpu.cfs_quota_us") == "-1"
    assert read(cg, "pids", "pids.max") == "max"
    assert cg.stats().memory_limit is None


def test_processes_join_stats_kill_all_remove(
    driver: CgroupDriver, cgroup: tuple[Cgroup, list[subprocess.Popen[bytes]]]
) -> None:
    cg, procs = cgroup
    cg.apply(Limits(memory=64 * MiB, cpus=1, pids=32))
    # Moved from outside by writing its pid, as the brief's simplest case.
    sleeper = subprocess.Popen(["sleep", "60"])
    procs.append(sleeper)
    for file in cg.procs_files:
        Path(file).write_text(str(sleeper.pid))
    assert cg.pids() == [sleeper.pid]
    # Joined before exec, as the container helper does; the shell forks three more.
    shell = spawn(cg, procs, "sh", "-c", "sleep 60 & sleep 60 & sleep 60 & wait")
    wait_for(lambda: len(cg.pids()) == 5)
    assert shell in cg.pids()
    stats = cg.stats()
    assert stats.pids_current == 5
    assert stats.memory_limit == 64 * MiB
    assert stats.memory_usage > 0
    assert stats.cpu_usage_ns > 0
    assert stats.oom_kills == 0

    t0 = time.perf_counter()
    cg.kill_all()
    killed = time.perf_counter() - t0
    assert cg.pids() == []
    assert sleeper.wait(timeout=5) == -9
    assert procs[1].wait(timeout=5) == -9
    print(f"kill_all of 5 processes: {killed * 1000:.1f} ms")

    t0 = time.perf_counter()
    cg.remove()
    print(f"remove: {(time.perf_counter() - t0) * 1000:.1f} ms")
    assert not any(Path(d).exists() for d in cg.paths)
    assert driver.open(cg.name) is None
    cg.remove()  # idempotent


def test_oom_kill_is_counted(cgroup: tuple[Cgroup, list[subprocess.Popen[bytes]]]) -> None:
    cg, procs = cgroup
    cg.apply(Limits(memory=64 * MiB, memswap=64 * MiB))
    hog = "b = []\nwhile True:\n    b.append(b'x' * (8 << 20))\n"
    t0 = time.perf_counter()
    spawn(cg, procs, sys.executable, "-c", hog)
    assert procs[0].wait(timeout=30) == -9
    print(f"OOM kill after {(time.perf_counter() - t0) * 1000:.0f} ms")
    assert cg.oom_kills() == 1
    assert cg.stats().oom_kills == 1


def test_cpu_quota_throttles(cgroup: tuple[Cgroup, list[subprocess.Popen[bytes]]]) -> None:
    cg, procs = cgroup
    cg.apply(Limits(cpus=0.2))
    busy = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.0:\n    pass\n"
    t0 = time.perf_counter()
    spawn(cg, procs, sys.executable, "-c", busy)
    assert procs[0].wait(timeout=30) == 0
    wall = time.perf_counter() - t0
    stats = cg.stats()
    cpu = stats.cpu_usage_ns / 1e9
    print(
        f"cpus=0.2: {cpu:.2f} s CPU over {wall:.2f} s wall ({cpu / wall:.2f} CPUs), "
        f"nr_throttled {stats.nr_throttled}, throttled {stats.throttled_ns / 1e9:.2f} s"
    )
    assert stats.nr_throttled > 0
    assert cpu / wall < 0.4  # unthrottled it would be about 1.0


def test_pids_limit_refuses_forks(cgroup: tuple[Cgroup, list[subprocess.Popen[bytes]]]) -> None:
    cg, procs = cgroup
    cg.apply(Limits(pids=4))
    spawn(cg, procs, "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 60 & done; wait")
    wait_for(lambda: cg.stats().pids_refused > 0)
    stats = cg.stats()
    print(f"pids=4: current {stats.pids_current}, refused {stats.pids_refused}")
    assert stats.pids_current <= 4
    cg.kill_all()
    assert cg.pids() == []
