"""The supervisor for real: restart policies, dependencies, shutdown, leftovers, the CLI.

Each test names the acceptance point of issue 3 it shows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor.paths import ProjectPaths
from tests.privileged.supervised import Supervised, make_stack, sv


def make(made: list[Supervised], project: ProjectPaths, tmp_path: Path, toml: str,
         rootfs: Path) -> Supervised:
    return make_stack(made, project, tmp_path, toml, rootfs)


# -- 1. restart policies --------------------------------------------------------------------

def test_on_failure_3_restarts_exactly_three_times(stack: list[Supervised],
                                                   project: ProjectPaths, tmp_path: Path,
                                                   busybox_rootfs: Path) -> None:
    s = make(stack, project, tmp_path, """
[containers.flaky]
rootfs = "ROOTFS"
command = ["sh", "-c", "exit 1"]
restart = "on-failure:3"
restart_backoff = { initial = "100ms", max = "1s" }
""", busybox_rootfs)
    assert s.up().returncode == 0
    state = s.wait_state("flaky", "exited", timeout=30)
    events = s.events()
    starts = [e for e in events if e["action"] == "start"]
    dies = [e for e in events if e["action"] == "die"]
    restarts = [e for e in events if e["action"] == "restart"]
    assert len(starts) == 4 and len(dies) == 4 and len(restarts) == 3
    assert [float(e["attributes"]["delay"]) for e in restarts] == [0.1, 0.2, 0.4]
    for die, start in zip(dies, starts[1:], strict=False):
        gap = start["time"] - die["time"]
        assert gap >= float(restarts[dies.index(die)]["attributes"]["delay"]) - 0.01
    assert state["restart_count"] == 3 and state["exit_code"] == 1


def test_always_restarts_after_exit_0_and_no_never(stack: list[Supervised],
                                                  project: ProjectPaths, tmp_path: Path,
                                                  busybox_rootfs: Path) -> None:
    s = make(stack, project, tmp_path, """
[containers.again]
rootfs = "ROOTFS"
command = ["sh", "-c", "sleep 0.1"]
restart = "always"
restart_backoff = { initial = "0s" }

[containers.once]
rootfs = "ROOTFS"
command = ["sh", "-c", "exit 0"]
restart = "no"
""", busybox_rootfs)
    assert s.up().returncode == 0
    s.wait_event("start", "again", count=3)
    assert s.wait_state("once", "exited")["exit_code"] == 0
    time.sleep(0.3)
    assert len([e for e in s.events() if e["action"] == "start"
                and e["container"] == "once"]) == 1


def test_unless_stopped_stays_stopped_across_supervisor_restart(
        stack: list[Supervised], project: ProjectPaths, tmp_path: Path,
        busybox_rootfs: Path) -> None:
    toml = """
[containers.svc]
rootfs = "ROOTFS"
command = ["sleep", "300"]
restart = "unless-stopped"
stop_grace_period = "0s"

[containers.other]
rootfs = "ROOTFS"
command = ["sleep", "300"]
restart = "always"
stop_grace_period = "0s"
"""
    s = make(stack, project, tmp_path, toml, busybox_rootfs)
    assert s.up().returncode == 0
    s.wait_state("svc", "running")
    s.ok("stop", "svc")
    assert s.wait_state("svc", "exited")["stopped_by_user"] is True
    s.ok("stop", "other")
    time.sleep(0.3)
    assert s.state("svc")["status"] == "exited"
    # A new supervisor: `other` (always) comes back, `svc` (unless-stopped) does not.
    assert s.pid is not None
    os.kill(s.pid, signal.SIGTERM)  # stops the supervisor as Ctrl-C does: records stay
    s.reap()
    assert s.up().returncode == 0
    s.wait_state("other", "running")
    assert s.state("svc")["status"] in ("created", "exited")


# -- 2. dependencies -------------------------------------------------------------------------

def test_service_healthy_holds_the_dependant(stack: list[Supervised], project: ProjectPaths,
                                            tmp_path: Path, busybox_rootfs: Path) -> None:
    s = make(stack, project, tmp_path, """
[containers.db]
rootfs = "ROOTFS"
command = ["sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 300"]
stop_grace_period = "1s"

[containers.db.healthcheck]
test = ["CMD", "test", "-e", "/tmp/ready"]
interval = "5s"
start_period = "10s"
start_interval = "100ms"

[containers.web]
rootfs = "ROOTFS"
command = ["sleep", "300"]
depends_on = { db = { condition = "service_healthy" } }
stop_grace_period = "1s"

[containers.side]
rootfs = "ROOTFS"
command = ["sleep", "300"]
stop_grace_period = "1s"
""", busybox_rootfs)
    assert s.up("--wait").returncode == 0
    events = s.events()
    healthy = next(e for e in events if e["action"] == "health_status"
                   and e["attributes"]["status"] == "healthy")
    web_start = next(e for e in events if e["action"] == "start" and e["container"] == "web")
    db_start = next(e for e in events if e["action"] == "start" and e["container"] == "db")
    side_start = next(e for e in events if e["action"] == "start" and e["container"] == "side")
    assert db_start["seq"] < healthy["seq"] < web_start["seq"]
    assert side_start["time"] - db_start["time"] < 0.5  # independent: started at once
    assert web_start["time"] - db_start["time"] >= 1.0
    s.down()
    events = s.events() if False else None  # the supervisor is gone; order checked below
    del events


def test_stop_order_is_reverse_dependency(stack: list[Supervised], project: ProjectPaths,
                                          tmp_path: Path, busybox_rootfs: Path) -> None:
    s = make(stack, project, tmp_path, """
[containers.db]
rootfs = "ROOTFS"
command = ["sleep", "300"]
init = true

[containers.app]
rootfs = "ROOTFS"
command = ["sleep", "300"]
depends_on = ["db"]
init = true

[containers.front]
rootfs = "ROOTFS"
command = ["sleep", "300"]
depends_on = ["app"]
init = true
""", busybox_rootfs)
    assert s.up().returncode == 0
    for name in ("db", "app", "front"):
        s.wait_state(name, "running")
    with subprocess.Popen([sys.executable, "-m", "supervisor", "-p", project.project,
                           "events", "--format", "json"], stdout=subprocess.PIPE,
                          text=True) as follower:
        time.sleep(0.3)
        s.cli("down")
        out, _ = follower.communicate(timeout=30)
    s.reap()
    starts = [e for e in s_history(out) if e["action"] == "die"]
    assert [e["container"] for e in starts] == ["front", "app", "db"]


def s_history(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- 3. shutdown and leftovers ---------------------------------------------------------------

def test_ctrl_c_stops_in_reverse_order(project: ProjectPaths, tmp_path: Path,
                                       busybox_rootfs: Path) -> None:
    (tmp_path / "stack.toml").write_text(f"""
[containers.db]
rootfs = "{busybox_rootfs}"
command = ["sh", "-c", "trap 'echo db bye; exit 0' TERM; echo db up; while :; do sleep 0.1; done"]

[containers.web]
rootfs = "{busybox_rootfs}"
command = ["sh", "-c", "trap 'echo web bye; exit 0' TERM; echo web up; while :; do sleep 0.1; done"]
depends_on = ["db"]
""")
    proc = subprocess.Popen([sys.executable, "-m", "supervisor", "-p", project.project,
                             str(tmp_path / "stack.toml"), "--no-color"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        sock = project.run / "api.sock"
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == "Attaching to db, web"
    assert "db   | db up" in lines and "web  | web up" in lines  # Compose's padding
    assert lines.index("web  | web bye") < lines.index("db   | db bye")
    assert "db   | db exited with code 0" in lines


def test_kill_9_leftovers_are_cleaned_and_reported(stack: list[Supervised],
                                                   project: ProjectPaths, tmp_path: Path,
                                                   busybox_rootfs: Path) -> None:
    s = make(stack, project, tmp_path, """
[containers.a]
rootfs = "ROOTFS"
command = ["sleep", "300"]
volumes = ["keep:/data"]

[containers.b]
rootfs = "ROOTFS"
command = ["sh", "-c", "sleep 300 & sleep 300"]
""", busybox_rootfs)
    assert s.up().returncode == 0
    s.wait_state("a", "running")
    s.wait_state("b", "running")
    s.ok("exec", "a", "sh", "-c", "echo kept > /data/f")
    s.kill9()
    assert s.up().returncode == 0
    log = (project.run / "supervisor.log").read_text()
    cleaned = [line for line in log.splitlines() if line.startswith("cleaned leftover")]
    kernel = sorted(line for line in cleaned if "cgroup" in line)
    assert kernel == [f"cleaned leftover cgroup supervise-{project.project}.a and its 1 process",
                      # sh forks one sleep and execs the other
                      f"cleaned leftover cgroup supervise-{project.project}.b and its 2 "
                      "processes"]
    s.wait_state("a", "running")
    assert s.ok("exec", "a", "cat", "/data/f") == "kept\n"  # the volume was not touched
    # the killed supervisor's fork server and the processes the new one killed, when they
    # were reparented to this test process rather than to init
    s.reap_orphans()


# -- 4. the CLI against a real supervisor ----------------------------------------------------

def test_cli_verbs(stack: list[Supervised], project: ProjectPaths, tmp_path: Path,
                   busybox_rootfs: Path) -> None:
    s = make(stack, project, tmp_path, """
[containers.web]
rootfs = "ROOTFS"
command = ["sh", "-c", "echo hello; exec sleep 300"]
stop_grace_period = "1s"
mem_limit = "64m"

[containers.job]
rootfs = "ROOTFS"
command = ["sh", "-c", "exit 3"]
""", busybox_rootfs)
    assert s.up().returncode == 0
    s.wait_state("web", "running")
    ps = s.ok("ps")
    assert ps.splitlines()[0].split()[:3] == ["NAME", "IMAGE", "COMMAND"]
    assert "web" in ps and "job" not in ps
    rows = [json.loads(line) for line in s.ok("ps", "-a", "--format", "json").splitlines()]
    assert {r["name"] for r in rows} == {"web", "job"}
    assert s.ok("ps", "-a", "--filter", "status=exited", "-q").split() == ["job"]
    assert s.ok("wait", "job").strip() == "3"
    inspect = json.loads(s.ok("inspect", "web"))
    assert inspect[0]["state"]["running"] is True and inspect[0]["config"]["mem_limit"] == 64 << 20
    top = s.ok("top", "web")
    assert "sleep 300" in top
    assert s.ok("exec", "web", "hostname").strip() == "web"
    r = s.cli("exec", "web", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")
    r = s.cli("exec", "-i", "web", "tr", "a-z", "A-Z", input="shout\n")
    assert (r.returncode, r.stdout) == (0, "SHOUT\n")
    stats = json.loads(s.ok("stats", "--no-stream", "--format", "json", "web"))
    assert stats["memory_limit"] == 64 << 20 and stats["pids"] >= 1
    assert s.ok("update", "--memory", "96m", "--cpus", "0.5", "web").strip() == "web"
    assert json.loads(s.ok("stats", "--no-stream", "--format", "json", "web"))[
        "memory_limit"] == 96 << 20
    s.ok("pause", "web")
    assert s.state("web")["status"] == "paused"
    s.ok("unpause", "web")
    (tmp_path / "local.txt").write_text("copied in\n")
    s.ok("cp", str(tmp_path / "local.txt"), "web:/tmp")
    assert s.ok("exec", "web", "cat", "/tmp/local.txt") == "copied in\n"
    s.ok("cp", "web:/etc/hostname", str(tmp_path / "hostname-copy"))
    assert (tmp_path / "hostname-copy").read_text() == "web\n"
    r = s.cli("cp", "web:/nope", str(tmp_path))
    assert r.returncode == 1 and "Could not find the file /nope in container web" in r.stderr
    assert s.ok("port", "web") == ""
    s.ok("restart", "-t", "1", "web")
    assert s.wait_state("web", "running")["restart_count"] == 1
    s.ok("kill", "-s", "SIGKILL", "web")
    assert s.wait_state("web", "exited")["exit_code"] == 137
    s.ok("start", "web")
    s.wait_state("web", "running")
    s.ok("stop", "-t", "0", "web")
    s.ok("rm", "job")
    assert "job" not in s.ok("ps", "-a")
    r = s.cli("stop", "ghost")
    assert r.returncode == 1 and r.stderr == "Error response from supervisor: " \
                                              "No such container: ghost\n"
    actions = {e["action"] for e in s.events()}
    assert {"create", "start", "die", "stop", "kill", "pause", "unpause", "destroy"} <= actions


def test_run_joins_the_supervisor(stack: list[Supervised], project: ProjectPaths,
                                  tmp_path: Path, busybox_rootfs: Path) -> None:
    """The seed's one-offs: `run -d`, `run --rm --volumes-from`, attached output."""
    s = make(stack, project, tmp_path, """
[containers.primary]
rootfs = "ROOTFS"
command = ["sh", "-c", "echo logged > /var/log/redis/server.log; exec sleep 300"]
volumes = ["/var/log/redis"]
stop_grace_period = "0s"
""", busybox_rootfs)
    assert s.up().returncode == 0
    s.wait_state("primary", "running")
    r = s.cli("run", "--rm", "--volumes-from", "primary", str(busybox_rootfs), "cat",
              "/var/log/redis/server.log")
    assert (r.returncode, r.stdout) == (0, "logged\n"), r.stderr
    assert "run-" not in s.ok("ps", "-a")  # --rm removed it
    r = s.cli("run", "-d", "--restart", "always", "--name", "bg", str(busybox_rootfs),
              "sleep", "300")
    assert (r.returncode, r.stdout) == (0, "bg\n"), r.stderr
    s.wait_state("bg", "running")
    assert s.pid is not None
    os.kill(s.pid, signal.SIGTERM)  # a supervisor restart: `bg` is not in the stack file
    s.reap()
    assert s.up().returncode == 0
    s.wait_state("bg", "running")  # back, and started: restart = always
    r = s.cli("run", "-d", "--rm", str(busybox_rootfs), "no-such-command")
    assert r.returncode == 127 and "executable file not found" in r.stderr
    r = s.cli("run", "--rm", str(busybox_rootfs), "no-such-command")
    assert r.returncode == 127 and "executable file not found" in r.stderr
    r = s.cli("run", "--rm", "-t", str(busybox_rootfs), "sh", "-c", "test -t 1 && echo tty")
    assert r.stdout.replace("\r", "") == "tty\n"


def test_up_again_recreates_only_what_changed(stack: list[Supervised], project: ProjectPaths,
                                              tmp_path: Path, busybox_rootfs: Path) -> None:
    toml = """
[containers.a]
rootfs = "ROOTFS"
command = ["sleep", "300"]
stop_grace_period = "0s"
volumes = ["/data"]

[containers.b]
rootfs = "ROOTFS"
command = ["sleep", "300"]
stop_grace_period = "0s"
"""
    s = make(stack, project, tmp_path, toml, busybox_rootfs)
    assert s.up().returncode == 0
    pid_a = s.wait_state("a", "running")["pid"]
    s.wait_state("b", "running")
    s.ok("exec", "a", "sh", "-c", "echo kept > /data/f")
    s.file.write_text(s.file.read_text().replace('["sleep", "300"]\nstop_grace_period = "0s"'
                                                 '\nvolumes',
                                                 '["sleep", "301"]\nstop_grace_period = "0s"'
                                                 '\nvolumes'))
    pid_b = s.state("b")["pid"]
    r = s.up()
    assert r.returncode == 0 and r.stdout.strip() == "✔ Container a  Recreated"
    assert s.wait_state("a", "running")["pid"] != pid_a
    assert s.state("b")["pid"] == pid_b
    assert s.ok("exec", "a", "cat", "/data/f") == "kept\n"  # its anonymous volume was kept


def test_no_supervisor_is_a_one_line_hint(project: ProjectPaths) -> None:
    r = sv("-p", project.project, "ps")
    assert r.returncode == 1
    assert r.stderr == (f"no supervisor is running for project {project.project}: start it "
                        "with `supervise up` (or `supervise run -d ...`)\n")


def test_second_supervisor_for_a_project_is_refused(stack: list[Supervised],
                                                    project: ProjectPaths, tmp_path: Path,
                                                    busybox_rootfs: Path) -> None:
    s = make(stack, project, tmp_path, """
[containers.a]
rootfs = "ROOTFS"
command = ["sleep", "300"]
stop_grace_period = "0s"
""", busybox_rootfs)
    assert s.up().returncode == 0
    r = sv("-p", project.project, "_serve", str(s.file))
    assert r.returncode == 1
    assert f"project {project.project} already has a supervisor (pid {s.pid})" in r.stdout + \
        r.stderr


def test_attach_events_and_stats_stream(stack: list[Supervised], project: ProjectPaths,
                                        tmp_path: Path, busybox_rootfs: Path) -> None:
    s = make(stack, project, tmp_path, """
[containers.ticker]  # $$i: Compose escaping of $
rootfs = "ROOTFS"
command = ["sh", "-c", "for i in 1 2 3; do sleep 0.3; echo tick $$i; done; exit 5"]
restart = "no"
""", busybox_rootfs)
    assert s.up().returncode == 0
    r = s.cli("attach", "ticker", timeout=30)
    assert r.returncode == 5 and "tick 3" in r.stdout
    text = s.ok("events", "--since", "0", "--until", str(time.time()))
    lines = text.splitlines()
    assert any(" container start ticker (pid=" in line for line in lines)
    assert any(line.endswith("container die ticker (exitCode=5, oomKilled=false)")
               for line in lines)
    s.ok("start", "ticker")
    with subprocess.Popen([sys.executable, "-m", "supervisor", "-p", project.project, "stats",
                           "--format", "json", "ticker"], stdout=subprocess.PIPE,
                          text=True) as follower:
        assert follower.stdout is not None
        first = json.loads(follower.stdout.readline())
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=10)
    assert first["name"] == "ticker"


def test_abort_on_container_exit_and_exit_code_from(project: ProjectPaths, tmp_path: Path,
                                                    busybox_rootfs: Path) -> None:
    (tmp_path / "stack.toml").write_text(f"""
[containers.server]
rootfs = "{busybox_rootfs}"
command = ["sleep", "300"]
init = true

[containers.tests]
rootfs = "{busybox_rootfs}"
command = ["sh", "-c", "sleep 0.5; echo tests done; exit 4"]
""")
    r = sv("-p", project.project, "up", "--no-color", "--exit-code-from", "tests",
           str(tmp_path / "stack.toml"), timeout=60)
    assert r.returncode == 4, r.stderr
    assert "tests   | tests done" in r.stdout.splitlines()
    assert "tests exited: aborting on container exit" in r.stderr
    assert sv("-p", project.project, "down").returncode == 0


def test_run_interactive_joins_with_stdin(stack: list[Supervised], project: ProjectPaths,
                                          tmp_path: Path, busybox_rootfs: Path) -> None:
    s = make(stack, project, tmp_path, """
[containers.idle]
rootfs = "ROOTFS"
command = ["sleep", "300"]
stop_grace_period = "0s"
""", busybox_rootfs)
    assert s.up().returncode == 0
    r = s.cli("run", "--rm", "-i", str(busybox_rootfs), "tr", "a-z", "A-Z", input="typed\n")
    assert (r.returncode, r.stdout) == (0, "TYPED\n"), r.stderr


def test_no_supervisor_behind_a_foreground_run(project: ProjectPaths, busybox_rootfs: Path,
                                               ) -> None:
    """An in-process `run` holds the project shared: a supervisor (whose leftover scan
    would kill its container) or an offline `down` is refused meanwhile."""
    run = subprocess.Popen([sys.executable, "-m", "supervisor", "run", "--rm", "--name", "fg",
                            str(busybox_rootfs), "sleep", "2"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not (project.run / "lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        r = sv("-p", project.project, "_serve")
        assert r.returncode == 1
        assert "has containers running in the foreground (supervise run)" in r.stderr + r.stdout
        r = sv("-p", project.project, "down")
        assert r.returncode == 1
        assert run.wait(timeout=30) == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def test_the_projects_state_is_out_of_other_users_reach(
        stack: list[Supervised], project: ProjectPaths, tmp_path: Path, busybox_rootfs: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A container (root inside) can make a setuid-root file in its writable layer or a
    volume; no other user of the host may reach it there, even when every folder above the
    state dir is open to all (pytest's own temp folders are not: a world-open one here)."""
    import shutil
    import stat as st
    import tempfile

    open_dir = Path(tempfile.mkdtemp(prefix="sv-perm-"))
    os.chmod(open_dir, 0o755)
    try:
        monkeypatch.setenv("SUPERVISE_STATE_DIR", str(open_dir / "state"))
        paths = ProjectPaths.for_project(project.project, os.environ)
        s = make(stack, paths, tmp_path, """
[containers.a]
rootfs = "ROOTFS"
command = ["sh", "-c", "cp /bin/busybox /suid && chmod 4755 /suid && sleep 300"]
volumes = ["data:/data"]
stop_grace_period = "0s"
""", busybox_rootfs)
        assert s.up().returncode == 0
        s.wait_state("a", "running")
        assert st.S_IMODE(paths.state.stat().st_mode) == 0o700
        upper = paths.container("a") / "upper" / "suid"
        for _ in range(100):
            if upper.exists():
                break
            time.sleep(0.05)
        assert upper.stat().st_mode & st.S_ISUID  # it is there, setuid root...
        # (setpriv resolves its command before it drops to nobody: a shell execs it after)
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "/bin/sh", "-c", f"exec {upper} true"],
                           capture_output=True, text=True)
        assert r.returncode != 0 and "ermission denied" in r.stderr  # ...out of reach
        s.down("-v")
    finally:
        shutil.rmtree(open_dir, ignore_errors=True)
