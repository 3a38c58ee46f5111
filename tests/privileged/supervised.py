"""A real detached supervisor for tests: `supervise up -d`, the CLI, events, `down`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from supervisor.paths import ProjectPaths
from tests.leakguard import OURS


def sv(*args: str, timeout: float = 60, input: str | None = None, cwd: Path | None = None,
       ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supervisor", *args], capture_output=True,
                          text=True, timeout=timeout, input=input, cwd=cwd)


class Supervised:
    """One project's detached supervisor, started from a stack file in a temp folder."""

    def __init__(self, paths: ProjectPaths, folder: Path, toml: str) -> None:
        self.paths = paths
        OURS.add(paths.project)
        self.folder = folder
        self.file = folder / "stack.toml"
        self.file.write_text(toml)
        self.pid: int | None = None

    def up(self, *flags: str) -> subprocess.CompletedProcess[str]:
        r = sv("-p", self.paths.project, "up", "-d", *flags, str(self.file), timeout=120)
        pid_file = self.paths.run / "pid"
        if pid_file.exists():
            self.pid = int(pid_file.read_text())
        return r

    def cli(self, *args: str, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        return sv("-p", self.paths.project, *args, timeout=timeout, input=input)

    def ok(self, *args: str, timeout: float = 60) -> str:
        r = self.cli(*args, timeout=timeout)
        assert r.returncode == 0, f"supervise {' '.join(args)}: {r.stderr}"
        return r.stdout

    def events(self) -> list[dict[str, Any]]:
        out = self.ok("events", "--format", "json", "--since", "0", "--until",
                      str(time.time()))
        return [json.loads(line) for line in out.splitlines()]

    def wait_event(self, action: str, container: str, count: int = 1,
                   timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events()
                     if e["action"] == action and e["container"] == container]
            if len(found) >= count:
                return found
            assert time.monotonic() < deadline, f"no {count}x {action} of {container}"
            time.sleep(0.05)

    def state(self, name: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self.ok("inspect", name))
        return data[0]["state"]

    def wait_state(self, name: str, status: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(name)
            if state["status"] == status:
                return state
            assert time.monotonic() < deadline, f"{name} stays {state['status']}"
            time.sleep(0.05)

    def down(self, *flags: str) -> None:
        self.cli("down", *flags, timeout=120)
        self.reap()

    def kill9(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        self.reap()

    def reap_orphans(self) -> list[int]:
        """After a kill -9, the dead supervisor's fork server and containers are reparented
        to the nearest child subreaper: this test process, once a Runtime ran in it (on a
        real host, init).  Reaps those that are zombies now."""
        reaped = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == os.getpid():
                try:
                    os.waitpid(int(entry.name), os.WNOHANG)
                    reaped.append(int(entry.name))
                except ChildProcessError:
                    pass
        return reaped

    def reap(self) -> None:
        """The detached supervisor may have been reparented to the test process (a child
        subreaper once a Runtime ran here): wait for it, so no zombie is left."""
        if self.pid is None:
            return
        deadline = time.monotonic() + 30
        while Path(f"/proc/{self.pid}").exists() and time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(self.pid, os.WNOHANG)
                if done:
                    break
            except ChildProcessError:
                stat = Path(f"/proc/{self.pid}/stat")
                if not stat.exists() or stat.read_text().split(")")[1].split()[0] == "Z":
                    break
            time.sleep(0.02)
        self.pid = None


def make_stack(made: list[Supervised], project: ProjectPaths, folder: Path, toml: str,
               rootfs: Path, *, up: bool = False) -> Supervised:
    """A Supervised for `toml` (ROOTFS replaced by the busybox rootfs), brought down at the
    end of the test by the `stack` fixture; started at once with `up`."""
    s = Supervised(project, folder, toml.replace("ROOTFS", str(rootfs)))
    made.append(s)
    if up:
        assert s.up().returncode == 0
    return s
