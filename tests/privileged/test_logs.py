"""Container output through the log store, for real: `supervise logs`, follow, no loss.

Each test names the acceptance point of issue 4 it shows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor.paths import ProjectPaths
from tests.privileged.supervised import Supervised, make_stack


def start(made: list[Supervised], project: ProjectPaths, tmp_path: Path, toml: str,
          rootfs: Path) -> Supervised:
    return make_stack(made, project, tmp_path, toml, rootfs, up=True)


def test_a_million_lines_stored_in_order_once(stack: list[Supervised], project: ProjectPaths,
                                              tmp_path: Path, busybox_rootfs: Path) -> None:
    """Point 1: 1,000,000 numbered lines from a container that exits at once."""
    s = start(stack, project, tmp_path, """
[containers.counter]
rootfs = "ROOTFS"
command = ["seq", "1", "1000000"]
""", busybox_rootfs)
    assert s.wait_state("counter", "exited", timeout=60)["exit_code"] == 0
    r = s.cli("logs", "counter", timeout=120)
    assert r.returncode == 0
    lines = r.stdout.split("\n")
    assert lines[-1] == ""
    assert lines[:-1] == [str(i) for i in range(1, 1_000_001)]


def test_ten_concurrent_writers_every_line_once(stack: list[Supervised],
                                                project: ProjectPaths, tmp_path: Path,
                                                busybox_rootfs: Path) -> None:
    toml = "".join(f"""
[containers.w{i}]
rootfs = "ROOTFS"
command = ["sh", "-c", "seq 1 20000 | sed 's/^/w{i} /'"]
""" for i in range(10))
    s = start(stack, project, tmp_path, toml, busybox_rootfs)
    for i in range(10):
        s.wait_state(f"w{i}", "exited", timeout=60)
    r = s.cli("logs", "--json", timeout=120)
    records = [json.loads(line) for line in r.stdout.splitlines()]
    seqs = [rec["seq"] for rec in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for i in range(10):
        mine = [rec["line"] for rec in records if rec["container"] == f"w{i}"]
        assert mine == [f"w{i} {n}" for n in range(1, 20001)]


def test_logs_queries(stack: list[Supervised], project: ProjectPaths, tmp_path: Path,
                      busybox_rootfs: Path) -> None:
    s = start(stack, project, tmp_path, """
[containers.a]
rootfs = "ROOTFS"
command = ["sh", "-c", "echo a1; sleep 0.05; echo a-err >&2; sleep 0.3; echo a2; printf tail-no-newline"]

[containers.bb]
rootfs = "ROOTFS"
command = ["sh", "-c", "sleep 0.1; echo b1; echo b2"]
""", busybox_rootfs)
    s.wait_state("a", "exited")
    s.wait_state("bb", "exited")
    assert s.ok("logs", "a") == "a1\na-err\na2\ntail-no-newline"
    assert s.ok("logs", "--tail", "2", "bb") == "b1\nb2\n"
    assert s.ok("logs", "-n", "1", "bb") == "b2\n"
    assert s.ok("logs", "--source", "stderr", "a") == "a-err\n"
    assert s.ok("logs", "--grep", "^b", "--no-log-prefix") == "b1\nb2\n"
    merged = s.ok("logs", "--no-color").splitlines()
    assert merged.index("a   | a1") < merged.index("bb  | b1") < merged.index("a   | a2")
    stamped = s.ok("logs", "-t", "bb").splitlines()
    assert stamped[0].endswith("Z b1") and stamped[0][:4].isdigit()
    future = str(time.time() + 3600)
    assert s.ok("logs", "--since", future, "a") == ""
    r = s.cli("logs", "--grep", "(", "a")
    assert r.returncode == 1 and "grep: expected a regular expression" in r.stderr
    r = s.cli("logs", "--tail", "lots", "a")
    assert r.returncode == 2 and "--tail: expected a number of lines or 'all'" in r.stderr
    s.down()
    # A stopped stack's logs stay readable, from the store on disk.
    assert s.ok("logs", "bb") == "b1\nb2\n"


def test_follow_history_then_live_across_a_restart(stack: list[Supervised],
                                                   project: ProjectPaths, tmp_path: Path,
                                                   busybox_rootfs: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Point 3: -f started mid-stream: history then live, no gap, no duplicate, across
    restarts of the followed container and rotations of the store's segments (64 KiB
    segments here, so each run of the container fills one or two)."""
    monkeypatch.setenv("SUPERVISE_LOG_SEGMENT_BYTES", str(64 << 10))
    s = start(stack, project, tmp_path, """
[containers.tick]
rootfs = "ROOTFS"
command = ["sh", "-c", "r=$$(cut -c1-8 /proc/sys/kernel/random/uuid); seq 1 4000 | sed 's/^/run-'$$r'-bulk-/'; i=0; while [ $$i -lt 15 ]; do i=$$((i+1)); echo run-$$r-$$i; sleep 0.05; done"]
restart = "always"
restart_backoff = { initial = "0s" }
""", busybox_rootfs)
    s.wait_event("start", "tick", count=2)
    segments_before = len(list(project.logs.glob("*.seg")))
    output = tmp_path / "followed.txt"  # a file, not a pipe: the follower never blocks
    with output.open("w") as out, subprocess.Popen(
            [sys.executable, "-m", "supervisor", "-p", project.project, "logs", "-f", "tick"],
            stdout=out) as follower:
        s.wait_event("start", "tick", count=4, timeout=60)
        time.sleep(0.2)
        s.ok("stop", "tick")
        time.sleep(0.5)
        follower.terminate()
        follower.wait(timeout=10)
    assert len(list(project.logs.glob("*.seg"))) > segments_before + 1  # rotated meanwhile
    lines = output.read_text().splitlines()
    assert len(lines) == len(set(lines)), [x for x in lines if not x.startswith("run-")][:5]
    history = s.ok("logs", "tick").splitlines()
    assert lines == history[:len(lines)]  # the same lines, in the same order, none missing
    runs = [line.split("-")[1] for line in lines]
    assert len(set(runs)) >= 4  # across restarts
    assert sum(line.endswith("-bulk-4000") for line in lines) >= 3


def test_foreground_output_comes_from_the_store(project: ProjectPaths, tmp_path: Path,
                                                busybox_rootfs: Path) -> None:
    (tmp_path / "stack.toml").write_text(f"""
[containers.one]
rootfs = "{busybox_rootfs}"
command = ["sh", "-c", "echo first; echo second"]
""")
    r = subprocess.run([sys.executable, "-m", "supervisor", "-p", project.project, "up",
                        "--no-color", "--abort-on-container-exit", str(tmp_path / "stack.toml")],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.splitlines() == ["Attaching to one", "one  | first", "one  | second",
                                     "one  | one exited with code 0"]
    logs = subprocess.run([sys.executable, "-m", "supervisor", "-p", project.project, "logs",
                           "one"], capture_output=True, text=True, timeout=60)
    assert logs.stdout == "first\nsecond\n"
    subprocess.run([sys.executable, "-m", "supervisor", "-p", project.project, "down"],
                   capture_output=True, timeout=60)


def test_log_files_in_volumes_are_tailed(stack: list[Supervised], project: ProjectPaths,
                                         tmp_path: Path, busybox_rootfs: Path) -> None:
    """Sources: a log file inside a volume, read through `volumes_from` by another
    container's declaration too; rotation by rename keeps every line once."""
    s = start(stack, project, tmp_path, """
[containers.app]
rootfs = "ROOTFS"
command = ["sh", "-c", "for i in 1 2 3; do echo app-$$i >> /var/log/app/app.log; sleep 0.1; done; mv /var/log/app/app.log /var/log/app/app.log.1; for i in 4 5; do echo app-$$i >> /var/log/app/app.log; sleep 0.1; done; exec sleep 300"]
volumes = ["/var/log/app"]
logs = { files = ["/var/log/app/*.log"] }
stop_grace_period = "0s"
""", busybox_rootfs)
    deadline = time.monotonic() + 20
    while True:
        out = s.ok("logs", "--source", "file", "app")
        if out.count("\n") >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert out == "app-1\napp-2\napp-3\napp-4\napp-5\n"
    records = [json.loads(line) for line in s.ok("logs", "--json", "app").splitlines()]
    assert {r["source"] for r in records} == {"file:/var/log/app/app.log"}


def test_log_files_outside_volumes_are_refused(project: ProjectPaths, tmp_path: Path,
                                               busybox_rootfs: Path) -> None:
    from tests.privileged.supervised import sv

    r = sv("run", "--rm", str(busybox_rootfs), "true", timeout=30)  # a baseline that works
    assert r.returncode == 0
    (tmp_path / "stack.toml").write_text(f"""
[containers.app]
rootfs = "{busybox_rootfs}"
command = ["true"]
logs = {{ files = ["/var/log/app/*.log"] }}
""")
    r = sv("-p", project.project, "up", "--no-color", str(tmp_path / "stack.toml"), timeout=30)
    assert r.returncode == 1
    assert "app: logs.files[0]: /var/log/app/*.log is not inside a volume of this container" \
        in r.stderr
    assert "Traceback" not in r.stderr


def test_kill_9_mid_write_loses_no_line_a_reader_saw(stack: list[Supervised],
                                                     project: ProjectPaths, tmp_path: Path,
                                                     busybox_rootfs: Path) -> None:
    """Point 4: kill -9 of the supervisor while a container writes fast; the next supervisor
    reopens the store (trimming a partial tail) and every line a follower had seen is
    there, in order, with no hole before it."""
    s = start(stack, project, tmp_path, """
[containers.fast]
rootfs = "ROOTFS"
command = ["seq", "1", "50000000"]
stop_grace_period = "0s"
""", busybox_rootfs)
    seen: list[str] = []
    with subprocess.Popen([sys.executable, "-m", "supervisor", "-p", project.project, "logs",
                           "-f", "fast"], stdout=subprocess.PIPE, text=True) as follower:
        assert follower.stdout is not None
        for line in follower.stdout:
            seen.append(line.rstrip("\n"))
            if len(seen) >= 20000:
                break
        s.kill9()
        killed_at = time.time()
        follower.kill()
    assert s.up().returncode == 0
    s.reap_orphans()
    s.ok("stop", "fast")  # the new supervisor started it again; its lines come later
    first_run = s.ok("logs", "--until", str(killed_at), "fast", timeout=120).split("\n")
    complete = first_run[:-1]  # the last piece may be a line cut by the kill
    assert complete[:len(seen)] == seen  # every line the follower saw, in order
    assert complete == [str(i) for i in range(1, len(complete) + 1)]  # no hole, no repeat


def test_log_files_never_follow_the_containers_symlinks(stack: list[Supervised],
                                                        project: ProjectPaths, tmp_path: Path,
                                                        busybox_rootfs: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("do not copy me\n")
    s = start(stack, project, tmp_path, f"""
[containers.sly]
rootfs = "ROOTFS"
command = ["sh", "-c", "ln -s {secret} /var/log/app/evil.log; mkfifo /var/log/app/fifo.log; mkdir -p /var/log/app/sub; echo ok > /var/log/app/real.log; exec sleep 300"]
volumes = ["/var/log/app"]
logs = {{ files = ["/var/log/app/*.log"] }}
stop_grace_period = "0s"
""", busybox_rootfs)
    deadline = time.monotonic() + 10
    while "ok" not in s.ok("logs", "sly") and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # a tick of the tailer after the planted files
    assert s.ok("logs", "sly") == "ok\n"
    assert s.state("sly")["status"] == "running"  # the supervisor is fine too


REDIS_LOG = "/var/log/redis/redis-server.log"


def _stored(s: Supervised, name: str, marker: str, timeout: float = 30) -> list[str]:
    """The container's file lines once ``marker`` is among them (the tailer caught up)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = s.ok("logs", "--source", "file", name).splitlines()
        if any(line.endswith(marker) for line in lines):
            return lines
        assert time.monotonic() < deadline, f"{marker} never stored"
        time.sleep(0.1)


def test_redis_log_file_rotated_and_resumed_after_a_supervisor_restart(
        stack: list[Supervised], project: ProjectPaths, tmp_path: Path) -> None:
    """Point 2: a real redis-server writes its log file into a volume; the file is rotated by
    rename and by copytruncate while redis logs, then rotated again while the supervisor is
    down (kill -9); every line arrives once, in order, none lost or repeated."""
    s = start(stack, project, tmp_path, f"""
[containers.redis]
image = "host"
command = ["redis-server", "--port", "0", "--unixsocket", "/tmp/redis.sock", "--dir", "/tmp",
           "--save", "", "--logfile", "{REDIS_LOG}", "--enable-debug-command", "yes"]
volumes = ["redislog:/var/log/redis"]
logs = {{ files = ["/var/log/redis/*.log"] }}
stop_grace_period = "1s"
""", Path("/"))

    def say(tag: str, n: int) -> None:
        """`DEBUG LOG` writes its argument as a line of redis's log: ``mark-TAG-1`` ..."""
        s.ok("exec", "redis", "sh", "-c", f"for i in $(seq 1 {n}); do redis-cli -s "
             f"/tmp/redis.sock DEBUG LOG mark-{tag}-$i >/dev/null || exit 1; done")
        _stored(s, "redis", f"mark-{tag}-{n}")

    log = project.volumes / "redislog" / "_data" / "redis-server.log"
    deadline = time.monotonic() + 30
    while b"ready to accept" not in (log.read_bytes() if log.exists() else b""):
        assert time.monotonic() < deadline, "redis did not start"
        time.sleep(0.1)
    say("a", 30)
    log.rename(log.with_name("redis-server.log.1"))  # rename rotation; redis reopens per line
    say("b", 30)
    shutil.copyfile(log, log.with_name("redis-server.log.2"))  # copytruncate
    os.truncate(log, 0)
    say("c", 5)  # fewer bytes than were there: the truncation is seen whatever the timing

    s.kill9()  # redis goes down with its supervisor
    s.reap_orphans()
    with log.open("ab") as f:  # lines that land while nobody tails...
        f.write(b"d-1 written while the supervisor was down\nd-2 also\n")
    log.rename(log.with_name("redis-server.log.3"))  # ...and a rotation nobody saw
    log.write_bytes(b"e-1 in the new file\n")
    assert s.up().returncode == 0
    s.reap_orphans()
    deadline = time.monotonic() + 30
    while True:
        try:
            say("f", 10)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "redis did not come back"
            time.sleep(0.2)

    written = b"".join((log.with_name(f"redis-server.log.{k}")).read_bytes()
                       for k in (1, 2, 3)) + log.read_bytes()
    stored = s.ok("logs", "--source", "file", "redis")
    assert stored == written.decode()
    lines = stored.splitlines()
    for tag, n in (("a", 30), ("b", 30), ("c", 5), ("f", 10)):
        mine = [line.rsplit(" ", 1)[1] for line in lines if f" mark-{tag}-" in line]
        assert mine == [f"mark-{tag}-{i}" for i in range(1, n + 1)]
    records = [json.loads(line) for line in s.ok("logs", "--json", "--source", "file",
                                                 "redis").splitlines()]
    assert {r["source"] for r in records} == {f"file:{REDIS_LOG}"}
