"""`supervise shell` in a real terminal (tmux) over a real running stack: keys in with
send-keys, the screen out with capture-pane."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.paths import ProjectPaths
from tests.privileged.supervised import Supervised, make_stack

STACK = """
[containers.web]
rootfs = "ROOTFS"
command = ["sh", "-c", "while true; do echo web-tick; sleep 0.5; done"]
stop_grace_period = "1s"

[containers.db]
rootfs = "ROOTFS"
command = ["sh", "-c", "while true; do sleep 1; done"]
stop_grace_period = "1s"
"""


class Tmux:
    """One tmux server of our own (its own -L socket): killed at the end, nothing else."""

    def __init__(self, log: Path) -> None:
        self.socket = f"sv-{uuid.uuid4().hex[:8]}"
        self.log = log
        self.pid: int | None = None

    def tmux(self, *args: str) -> str:
        r = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 0, f"tmux {' '.join(args)}: {r.stderr}"
        return r.stdout

    def start(self, command: list[str]) -> None:
        env = [f"{k}={os.environ[k]}" for k in ("SUPERVISE_STATE_DIR", "SUPERVISE_RUN_DIR")]
        line = " ".join(["env", *env, "TERM=xterm-256color", *command, "2>" + str(self.log)])
        self.tmux("new-session", "-d", "-s", "shell", "-x", "120", "-y", "40", line)
        self.pid = int(self.tmux("display-message", "-p", "#{pid}").strip())
        self.tmux("set-option", "-s", "escape-time", "0")  # Esc is Esc, not Alt-
        self.tmux("set-option", "-t", "shell", "remain-on-exit", "on")  # a crash stays readable

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "shell", *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "shell", "-l", text)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "shell")

    def wait(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                err = self.log.read_text() if self.log.exists() else ""
                raise AssertionError(f"waited for {text!r}; the screen:\n{screen}\n{err}")
            time.sleep(0.1)

    def row(self, name: str) -> list[str]:
        for line in self.screen().splitlines():
            if line.startswith(name + " "):
                return line.split()
        return []

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=10)
        if self.pid is None:
            return
        deadline = time.monotonic() + 10  # the server may be our child (a subreaper's)
        while Path(f"/proc/{self.pid}").exists() and time.monotonic() < deadline:
            try:
                os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.02)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(tmp_path / "shell.err")
    yield t
    t.kill()


def test_shell_in_tmux(stack: list[Supervised], project: ProjectPaths, tmp_path: Path,
                       busybox_rootfs: Path, tmux: Tmux) -> None:
    s = make_stack(stack, project, tmp_path, STACK, busybox_rootfs, up=True)
    s.wait_state("web", "running")
    s.wait_state("db", "running")
    tmux.start([sys.executable, "-m", "supervisor", "-p", project.project, "shell"])

    # the table lists the containers
    tmux.wait("2/2 running")
    screen = tmux.wait("web-tick")
    assert tmux.row("db")[:2] == ["db", "running"], screen
    assert tmux.row("web")[:3] == ["web", "running", "0"], screen

    # `restart web` typed in the shell: the counter moves, the events show
    tmux.type("restart web")
    tmux.keys("Enter")
    tmux.wait("restart web: done")
    tmux.wait("● web stop")
    tmux.wait("● web start")
    deadline = time.monotonic() + 30
    while tmux.row("web")[:3] != ["web", "running", "1"]:
        assert time.monotonic() < deadline, tmux.screen()
        time.sleep(0.1)

    # a line printed after the shell started reaches the log pane, and `/` finds it
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    s.ok("exec", "db", "sh", "-c", f"echo {marker} > /proc/1/fd/1")
    tmux.wait(f"| {marker}")
    tmux.type("/" + marker[:10])
    tmux.wait(f"/{marker[:10]}  1/1")
    tmux.keys("Enter")
    tmux.wait("n/N older/newer")  # the view's keys: the help bar says so
    tmux.keys("Escape")  # back to the command line

    # killing the supervisor is one status line; starting it again brings the table back
    s.kill9()
    tmux.wait("offline, retrying in")
    assert "· offline" in tmux.screen().splitlines()[0]
    assert s.up().returncode == 0
    s.reap_orphans()
    tmux.wait("connected to the supervisor of project")
    tmux.wait("2/2 running")
    assert tmux.row("web")[:2] == ["web", "running"]
    tmux.type("quit")
    tmux.keys("Enter")
    deadline = time.monotonic() + 10
    # tmux may show the pane dead a moment before it has recorded the exit status
    while len(dead := tmux.tmux("display-message", "-p", "-t", "shell",
                                "#{pane_dead} #{pane_dead_status} #{pane_dead_signal}"
                                ).split()) < 2 or dead[0] != "1":
        assert time.monotonic() < deadline, (dead, tmux.screen())
        time.sleep(0.1)
    assert dead[:2] == ["1", "0"], dead  # `quit` exits 0
    assert not (tmp_path / "shell.err").read_text().strip()
