"""The container runtime for real: namespaces, rootfs, cgroups, volumes, signals, exec.

Each test names the acceptance point of issue 2 it shows.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from supervisor import config
from supervisor.container import Container
from supervisor.paths import ProjectPaths
from supervisor.runtime import Runtime


def sv(*args: str, timeout: float = 60, input: str | None = None,
       ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supervisor", *args], capture_output=True,
                          text=True, timeout=timeout, input=input)


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames + dirnames):
            p = Path(dirpath) / name
            st = p.lstat()
            h.update(f"{p.relative_to(root)} {st.st_mode} {st.st_size} {st.st_mtime_ns}".encode())
    return h.hexdigest()


def make(name: str, **raw: object) -> config.Container:
    return config.container_from_mapping(name, dict(raw), where="test")


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    with Runtime() as rt:
        yield rt


async def run_to_end(rt: Runtime, paths: ProjectPaths, cfg: config.Container,
                     remove: bool = True) -> tuple[int, bool, str, str]:
    """Runs a container to its end; returns exit code, OOM flag, stdout, stderr."""
    c = Container.create(rt, paths, cfg)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        await c.start(devnull, out_w, err_w)
    finally:
        for fd in (out_w, err_w, devnull):
            os.close(fd)
    info = await c.wait()
    with os.fdopen(out_r, "rb") as f_out, os.fdopen(err_r, "rb") as f_err:
        out, err = f_out.read().decode(), f_err.read().decode()
    if remove:
        c.remove(volumes=True)
    return info.exit_code, info.oom_killed, out, err


# -- 1. isolation ---------------------------------------------------------------------------

def test_isolation_via_cli(project: ProjectPaths, busybox_rootfs: Path) -> None:
    """Point 1: PID 1, hostname, own processes only, rootfs untouched, `yes | head` ends."""
    before = tree_digest(busybox_rootfs)
    script = ("echo pid=$$; hostname; ps -o pid,comm | wc -l; ls /proc | grep -c '^[0-9]'; "
              "echo x > /written; mkdir -p /etc/new; rm /bin/cat; grep -c . /proc/self/mountinfo;"
              "yes | head -1")
    r = sv("run", "--rm", "-h", "boxy", str(busybox_rootfs), "sh", "-c", script, timeout=20)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[0] == "pid=1"
    assert lines[1] == "boxy"
    assert int(lines[3]) <= 3  # sh, ls (and grep): no host process is visible
    assert int(lines[4]) < 40  # the container's own mounts only, not the host's
    assert lines[5] == "y"
    assert tree_digest(busybox_rootfs) == before


def test_no_host_mounts_or_processes_visible(project: ProjectPaths,
                                             busybox_rootfs: Path) -> None:
    r = sv("run", "--rm", str(busybox_rootfs), "sh", "-c",
           "cat /proc/self/mountinfo; echo --; ps -o pid,comm", timeout=20)
    assert r.returncode == 0, r.stderr
    mountinfo, ps = r.stdout.split("--\n")
    points = {line.split()[4] for line in mountinfo.splitlines()}
    allowed = {"/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
               "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}
    masked = {"/proc/" + p for p in ("asound", "acpi", "kcore", "keys", "latency_stats",
                                     "timer_list", "timer_stats", "sched_debug", "scsi", "bus",
                                     "fs", "irq", "sys", "sysrq-trigger")}
    masked |= {"/sys/firmware", "/sys/devices/virtual/powercap"}
    assert points - allowed - masked == set()
    # sh execs its last command, so ps is PID 1 and the only process there is.
    assert [line.split() for line in ps.splitlines()[1:]] == [["1", "ps"]]


@pytest.mark.parametrize(("flags", "script", "code"), [
    ([], "exit 3", 3),
    # PID 1 ignores signals it has no handler for, even SIGKILL from inside (recipes §2)...
    ([], "kill -TERM $$; kill -KILL $$; exit 4", 4),
    # ...but not under tini, which reports 128 + signal as Docker does.
    (["--init"], "kill -TERM $$; sleep 5", 143),
    (["--init"], "kill -KILL $$; sleep 5", 137),
])
def test_exit_codes(project: ProjectPaths, busybox_rootfs: Path, flags: list[str],
                    script: str, code: int) -> None:
    r = sv("run", "--rm", *flags, str(busybox_rootfs), "sh", "-c", script, timeout=20)
    assert r.returncode == code, r.stderr


def test_exec_failures_are_docker_codes(project: ProjectPaths, busybox_rootfs: Path) -> None:
    r = sv("run", "--rm", str(busybox_rootfs), "no-such-cmd")
    assert r.returncode == 127
    assert 'exec: "no-such-cmd": executable file not found in $PATH' in r.stderr
    assert "Traceback" not in r.stderr
    r = sv("run", "--rm", str(busybox_rootfs), "/etc/passwd")
    assert r.returncode == 126, r.stderr
    assert "permission denied" in r.stderr


def test_signals_reset_and_user(project: ProjectPaths, busybox_rootfs: Path) -> None:
    r = sv("run", "--rm", "-u", "nobody", "-w", "/tmp/work", str(busybox_rootfs), "sh", "-c",
           "id -u; id -g; pwd")
    assert r.stdout.split("\n")[:3] == ["65534", "65534", "/tmp/work"], r.stderr
    r = sv("run", "--rm", "-u", "nobody", str(busybox_rootfs), "grep", "-E",
           "SigIgn|SigBlk|CapEff|NoNewPrivs", "/proc/self/status")
    assert r.returncode == 0, r.stderr
    status = dict(line.split(":\t") for line in r.stdout.splitlines())
    assert int(status["SigIgn"], 16) == 0 and int(status["SigBlk"], 16) == 0
    assert int(status["CapEff"], 16) == 0 and status["NoNewPrivs"] == "1"


def test_capabilities_default_and_adjusted(project: ProjectPaths,
                                           busybox_rootfs: Path) -> None:
    r = sv("run", "--rm", "--cap-drop", "CHOWN", "--cap-add", "NET_ADMIN",
           str(busybox_rootfs), "grep", "CapBnd", "/proc/self/status")
    assert r.returncode == 0, r.stderr
    caps = int(r.stdout.split()[1], 16)
    assert not caps & (1 << 0)  # CHOWN dropped
    assert caps & (1 << 12)  # NET_ADMIN added
    assert caps & (1 << 5)  # KILL kept from Docker's default
    assert not caps & (1 << 21)  # SYS_ADMIN never by default


def test_masked_and_readonly_proc(project: ProjectPaths, busybox_rootfs: Path) -> None:
    r = sv("run", "--rm", str(busybox_rootfs), "sh", "-c",
           "cat /proc/timer_list | wc -c; ls /proc/acpi | wc -l; "
           "echo 1 > /proc/sys/kernel/domainname && echo wrote; "
           "ls /dev | tr '\\n' ' '")
    assert r.stdout.split()[:2] == ["0", "0"]
    assert "wrote" not in r.stdout
    devs = set(r.stdout.split()[2:])
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm"} <= devs
    assert not any(d.startswith(("sd", "vd", "nvme", "mem", "kmsg")) for d in devs)


# -- 2. cgroups -------------------------------------------------------------------------------

async def test_memory_limit_oom(runtime: Runtime, project: ProjectPaths,
                                busybox_rootfs: Path) -> None:
    """Point 2: 50m limit, 200 MB allocation -> OOM-killed, reported, exit 137."""
    cfg = make("oom", rootfs=str(busybox_rootfs), mem_limit="50m",
               command=["sh", "-c", "head -c 200000000 /dev/zero | tail > /dev/null"])
    code, oom, _out, _err = await run_to_end(runtime, project, cfg)
    assert (code, oom) == (137, True)


async def test_memory_limit_allows_small(runtime: Runtime, project: ProjectPaths,
                                         busybox_rootfs: Path) -> None:
    cfg = make("small", rootfs=str(busybox_rootfs), mem_limit="50m",
               command=["sh", "-c", "head -c 10000000 /dev/zero | tail > /dev/null"])
    assert (await run_to_end(runtime, project, cfg))[:2] == (0, False)


FORK_LOOP = """
import os, time
kids = refused = 0
while refused < 20:
    try:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        kids += 1
    except OSError:
        refused += 1
print(kids, refused, flush=True)
"""


async def test_pids_limit_stops_fork_loop(runtime: Runtime, project: ProjectPaths) -> None:
    """pids_limit = 32 stops a fork loop: 31 children besides PID 1, the rest refused."""
    cfg = make("forky", image="host", pids_limit=32, command=["python3", "-c", FORK_LOOP])
    code, _oom, out, err = await run_to_end(runtime, project, cfg)
    assert code == 0, err
    assert out.split() == ["31", "20"]


async def test_cpus_quota_throttles(runtime: Runtime, project: ProjectPaths,
                                    busybox_rootfs: Path) -> None:
    """cpus = 0.5: a busy loop gets <= 0.6 of a core, and throttling is recorded."""
    cfg = make("busy", rootfs=str(busybox_rootfs), cpus=0.5,
               command=["sh", "-c", "while :; do :; done"], stop_grace_period="1s")
    c = Container.create(runtime, project, cfg)
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        await c.start(devnull, devnull, devnull)
    finally:
        os.close(devnull)
    await trio.sleep(0.3)
    first, t0 = c.stats(), time.monotonic()
    await trio.sleep(2.0)
    second, t1 = c.stats(), time.monotonic()
    await c.stop(timeout=1)
    c.remove()
    assert first is not None and second is not None
    share = (second.cpu_usage_ns - first.cpu_usage_ns) / 1e9 / (t1 - t0)
    assert 0.2 < share <= 0.6
    assert second.nr_throttled > first.nr_throttled


# -- 3. volumes -------------------------------------------------------------------------------

async def test_named_volume_outlives_container(runtime: Runtime, project: ProjectPaths,
                                               busybox_rootfs: Path) -> None:
    """Point 3: a named volume survives removal; volumes_from sees it; :ro refuses writes."""
    writer = make("writer", rootfs=str(busybox_rootfs), volumes=["data:/data"],
                  command=["sh", "-c", "echo kept > /data/f"])
    assert (await run_to_end(runtime, project, writer, remove=False))[0] == 0
    holder = Container.load(runtime, project, "writer")
    reader = make("reader", rootfs=str(busybox_rootfs), volumes_from=["writer:ro"],
                  command=["sh", "-c", "cat /data/f; echo no > /data/g || echo refused"])
    c = Container.create(runtime, project, reader, {"writer": holder.record})
    out_r, out_w = os.pipe()
    await c.start(out_w, out_w, out_w)
    os.close(out_w)
    assert (await c.wait()).exit_code == 0
    out = os.read(out_r, 4096).decode()
    os.close(out_r)
    assert out.startswith("kept\n") and "refused" in out
    c.remove()
    holder.remove()
    again = make("again", rootfs=str(busybox_rootfs), volumes=["data:/data:ro"],
                 command=["cat", "/data/f"])
    code, _, out, _ = await run_to_end(runtime, project, again)
    assert (code, out) == (0, "kept\n")


def test_volume_cli_refuses_in_use_and_lists(project: ProjectPaths,
                                             busybox_rootfs: Path) -> None:
    r = sv("run", "--name", "keep", "-v", "stuff:/s", str(busybox_rootfs), "true")
    assert r.returncode == 0, r.stderr
    ls = sv("volume", "ls")
    assert f"local           {project.project}_stuff" in ls.stdout
    rm = sv("volume", "rm", "stuff")
    assert rm.returncode == 1
    assert rm.stderr == f"volume {project.project}_stuff: volume is in use - [keep]\n"
    assert sv("rm", "keep").returncode == 0
    inspect = sv("volume", "inspect", f"{project.project}_stuff")
    assert '"Mountpoint"' in inspect.stdout
    assert sv("volume", "rm", "stuff").returncode == 0
    assert sv("volume", "ls", "-q").stdout == ""


async def test_read_only_rootfs(runtime: Runtime, project: ProjectPaths,
                                busybox_rootfs: Path) -> None:
    cfg = make("ro", rootfs=str(busybox_rootfs), read_only=True, volumes=["/vol"],
               tmpfs=["/scratch"], command=["sh", "-c",
               "touch /x 2>/dev/null && echo bad-root; touch /vol/x && echo vol-ok; "
               "touch /scratch/x && echo tmpfs-ok; touch /tmp/x 2>/dev/null && echo bad-tmp"])
    _code, _, out, _ = await run_to_end(runtime, project, cfg)
    assert out.split() == ["vol-ok", "tmpfs-ok"]
    # --rm took the anonymous volume along
    assert not any(project.volumes.iterdir()) if project.volumes.exists() else True


async def test_bind_mount_ro_and_rw(runtime: Runtime, project: ProjectPaths,
                                    busybox_rootfs: Path, tmp_path: Path) -> None:
    host = tmp_path / "shared"
    host.mkdir()
    (host / "in").write_text("from host\n")
    cfg = make("binds", rootfs=str(busybox_rootfs),
               volumes=[f"{host}:/rw", f"{host}:/ro:ro"], command=["sh", "-c",
               "cat /ro/in; echo out > /rw/out; echo x > /ro/y 2>/dev/null || echo refused"])
    _code, _, out, _ = await run_to_end(runtime, project, cfg)
    assert out.split("\n")[:2] == ["from host", "refused"]
    assert (host / "out").read_text() == "out\n"


# -- 4. stopping -------------------------------------------------------------------------------

async def test_sigterm_ignored_then_killed_after_grace(runtime: Runtime, project: ProjectPaths,
                                                       busybox_rootfs: Path) -> None:
    """Point 4: PID 1 without a SIGTERM handler is SIGKILLed after the grace period."""
    cfg = make("stubborn", rootfs=str(busybox_rootfs), command=["sleep", "60"],
               stop_grace_period="1s")
    c = Container.create(runtime, project, cfg)
    devnull = os.open(os.devnull, os.O_RDWR)
    await c.start(devnull, devnull, devnull)
    os.close(devnull)
    t0 = trio.current_time()
    info = await c.stop()
    took = trio.current_time() - t0
    assert info.exit_code == 137
    assert 0.9 < took < 3
    c.remove()


async def test_init_stops_at_once(runtime: Runtime, project: ProjectPaths,
                                  busybox_rootfs: Path) -> None:
    """init = true: tini forwards SIGTERM, the same command stops at once."""
    cfg = make("tini", rootfs=str(busybox_rootfs), command=["sleep", "60"], init=True,
               stop_grace_period="10s")
    c = Container.create(runtime, project, cfg)
    devnull = os.open(os.devnull, os.O_RDWR)
    await c.start(devnull, devnull, devnull)
    os.close(devnull)
    await trio.sleep(0.2)
    t0 = trio.current_time()
    info = await c.stop()
    assert trio.current_time() - t0 < 1
    assert info.exit_code == 143
    c.remove()


async def test_stop_leaves_no_process(runtime: Runtime, project: ProjectPaths,
                                      busybox_rootfs: Path) -> None:
    cfg = make("family", rootfs=str(busybox_rootfs), stop_grace_period="1s",
               command=["sh", "-c", "sleep 60 & sleep 60 & (sleep 60 &) ; wait"])
    c = Container.create(runtime, project, cfg)
    devnull = os.open(os.devnull, os.O_RDWR)
    await c.start(devnull, devnull, devnull)
    os.close(devnull)
    await trio.sleep(0.3)
    stats = c.stats()
    assert stats is not None and stats.pids_current >= 4
    await c.stop()
    assert runtime.cgroups.open(c.record.cgroup) is None
    c.remove()


# -- 5. exec, and the host image ---------------------------------------------------------------

def test_redis_in_host_image_and_exec(project: ProjectPaths) -> None:
    """Point 5: Debian's redis-server in a container; redis-cli through exec answers."""
    proc = subprocess.Popen([sys.executable, "-m", "supervisor", "run", "--rm", "--name",
                             "redis", "host", "redis-server", "--port", "7777"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            r = sv("exec", "redis", "redis-cli", "-p", "7777", "ping")
            if r.stdout.strip() == "PONG" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.stdout == "PONG\n", r.stderr
        who = sv("exec", "redis", "sh", "-c", "echo $$; cat /etc/hostname")
        assert who.stdout.split() != ["1"] and who.stdout.split()[1] == "redis"
        sv("exec", "redis", "redis-cli", "-p", "7777", "shutdown", "nosave")
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out
        assert "Ready to accept connections" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_exec_into_missing_container(project: ProjectPaths) -> None:
    r = sv("exec", "ghost", "true")
    assert r.returncode == 125
    assert r.stderr == f"ghost: no such container in project {project.project}\n"


# -- the rest of `run`'s flags ------------------------------------------------------------------

def test_run_tty_and_interactive(project: ProjectPaths, busybox_rootfs: Path) -> None:
    r = sv("run", "--rm", "-t", str(busybox_rootfs), "sh", "-c",
           "test -t 0 && test -t 1 && echo tty-ok; echo TERM=$TERM")
    assert r.returncode == 0, r.stderr
    assert r.stdout.replace("\r", "").split() == ["tty-ok", "TERM=xterm"]
    r = sv("run", "--rm", "-i", str(busybox_rootfs), "tr", "a-z", "A-Z", input="hello\n")
    assert (r.returncode, r.stdout) == (0, "HELLO\n")
    r = sv("run", "--rm", str(busybox_rootfs), "cat", input="ignored\n")
    assert (r.returncode, r.stdout) == (0, "")  # without -i stdin is /dev/null, as Docker's


def test_run_env_ulimit_shm_tmpfs(project: ProjectPaths, busybox_rootfs: Path,
                                  tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("FROM_FILE=1\nBOTH=file\n")
    r = sv("run", "--rm", "--env-file", str(env_file), "-e", "BOTH=flag", "-e", "PLAIN=x",
           "--ulimit", "nofile=1024:2048", "--shm-size", "16m", "--tmpfs", "/run:size=1m",
           str(busybox_rootfs), "sh", "-c",
           "echo $FROM_FILE $BOTH $PLAIN $HOME; ulimit -n; ulimit -Hn; "
           "df -k /dev/shm /run | tail -2 | awk '{print $2}'")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "flag", "x", "/root", "1024", "2048", "16384", "1024"]


def test_run_bad_flag_is_one_line(project: ProjectPaths, busybox_rootfs: Path) -> None:
    r = sv("run", "--memory", "lots", str(busybox_rootfs), "true")
    assert (r.returncode, r.stderr) == (
        2, "supervise run: --memory: expected a size such as '256m', got 'lots'\n")
    r = sv("run", "--rm", "/no/such/rootfs", "true")
    assert r.returncode == 125
    assert r.stderr.endswith(": rootfs /no/such/rootfs: no such directory\n")
    assert "Traceback" not in r.stderr


def test_no_device_nodes_and_no_symlink_escape_on_remove(project: ProjectPaths,
                                                          busybox_rootfs: Path,
                                                          tmp_path: Path) -> None:
    """No MKNOD by default, and the rootfs/volumes are nodev; removing a container whose
    layer holds a symlink to a host directory leaves that directory alone."""
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o755)
    (victim / "keep").write_text("x")
    r = sv("run", "--rm", "-v", f"{tmp_path}/vol:/vol", str(busybox_rootfs), "sh", "-c",
           f"mknod /x b 8 0 2>/dev/null && echo made; ln -s {victim} /escape; "
           f"ln -s {victim} /vol/escape; mkdir /d; chmod 000 /d; echo done")
    assert r.stdout.split() == ["done"], r.stderr
    assert oct(victim.stat().st_mode & 0o777) == "0o755" and (victim / "keep").exists()
    r = sv("run", "--rm", "--cap-add", "MKNOD", str(busybox_rootfs), "sh", "-c",
           "mknod /x b 8 0 && head -c1 /x >/dev/null 2>&1 || echo refused")
    assert r.stdout.split() == ["refused"]
