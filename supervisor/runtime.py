"""The process side of the runtime: the fork server, and waiting on container processes.

One `Runtime` per supervisor process.  It makes this process a child subreaper, starts the
fork server (`linux/init.py`) once, and hands out `ContainerProcess` handles: a pid plus a
pidfd that trio waits on.  No helper process stays alive per container.
"""

from __future__ import annotations

import array
import contextlib
import marshal
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import trio

from supervisor.errors import SupervisorError
from supervisor.linux import init as init_module
from supervisor.linux.namespaces import set_child_subreaper

INIT_PATH = Path(init_module.__file__).resolve()
REQUEST_TIMEOUT = 10.0


class ForkServerError(SupervisorError):
    """The fork server died or refused a request."""


def exit_code(returncode: int) -> int:
    """subprocess-style return code -> Docker's exit code (128 + signal when killed)."""
    return 128 - returncode if returncode < 0 else returncode


class ContainerProcess:
    """A process the fork server made and this process reaps (PID 1 or an exec)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        # Opened while the process is our (possibly zombie) child: no pid-reuse race.
        self._pidfd: int | None = os.pidfd_open(pid)
        self.returncode: int | None = None
        self._waiting = False
        self._done = trio.Event()

    @property
    def exit_code(self) -> int | None:
        return None if self.returncode is None else exit_code(self.returncode)

    def send_signal(self, sig: int) -> None:
        if self._pidfd is None:
            return
        try:
            signal.pidfd_send_signal(self._pidfd, sig)
        except ProcessLookupError:
            pass

    async def wait(self) -> int:
        """Waits for the exit and reaps; returns the Docker-style exit code."""
        if self._waiting:
            await self._done.wait()
        elif self.returncode is None:
            self._waiting = True
            assert self._pidfd is not None
            try:
                await trio.lowlevel.wait_readable(self._pidfd)
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            finally:
                if self.returncode is None:
                    self._waiting = False
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
            self._done.set()
        assert self.returncode is not None
        return exit_code(self.returncode)

    def close(self) -> None:
        """Drops the pidfd of a process nobody will wait for (it is reaped elsewhere)."""
        if self._pidfd is not None and not self._waiting:
            os.close(self._pidfd)
            self._pidfd = None


class ForkServer:
    """Client of `linux/init.py`; requests are serialised (each takes ~1 ms there)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Warm PID 1s mount a tmpfs of their own here, each in its private mount namespace:
        # the host sees an empty folder, removed with the server.
        self.staging = tempfile.mkdtemp(prefix="supervise-staging-")
        try:
            # -I -S: no site, no user paths; init.py imports only the standard library.
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(INIT_PATH), str(theirs.fileno()),
                 self.staging],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, close_fds=True,
            )
        finally:
            theirs.close()
        self._raw = ours
        ours.setblocking(False)
        self._sock = trio.socket.from_stdlib_socket(ours)
        self._lock = trio.Lock()

    async def request(self, req: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        async with self._lock:
            # Request and reply are one exchange: a cancel between them would leave the reply
            # for the next caller (wrong pids from then on).  So shielded, and time-bounded.
            with trio.CancelScope(shield=True):
                try:
                    with trio.fail_after(REQUEST_TIMEOUT):
                        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                        await self._sock.sendmsg([marshal.dumps(req)], anc if fds else [])
                        reply = await self._sock.recv(1 << 16)
                except trio.TooSlowError:
                    self._proc.kill()  # out of step for good: no later request may use it
                    raise ForkServerError("fork server: no answer within "
                                          f"{REQUEST_TIMEOUT:g} s (killed)") from None
                except OSError as e:
                    raise ForkServerError(f"fork server: {e.strerror or e}") from e
        if not reply:
            raise ForkServerError(f"fork server exited (status {self._proc.poll()})")
        result: dict[str, Any] = marshal.loads(reply)
        return result

    def close(self) -> None:
        """Ends the server (EOF), then reaps the warm PID 1 it had prepared (our child by
        CLONE_PARENT), which exits when the server's end of its socket closes."""
        warm = 0
        if self._proc.poll() is None:
            try:  # no request is in flight when the runtime closes: a plain blocking call
                self._raw.setblocking(True)
                self._raw.settimeout(5)
                self._raw.send(marshal.dumps({"op": "bye"}))
                warm = int(marshal.loads(self._raw.recv(1 << 16)).get("warm", 0))
            except (OSError, ValueError, EOFError):
                pass
        self._sock.close()  # EOF ends the server
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if warm:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(warm, 0)
        with contextlib.suppress(OSError):
            os.rmdir(self.staging)


class Runtime:
    """Per-process container machinery: subreaper, fork server, cgroup driver."""

    def __init__(self) -> None:
        from supervisor.linux import cgroups

        set_child_subreaper()
        self.cgroups = cgroups.detect()
        self.fork_server = ForkServer()
        self.last_cap = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
        self.permitted_caps = _permitted_caps()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.fork_server.close()

    async def spawn(self, req: dict[str, Any], fds: list[int]) -> ContainerProcess:
        """Sends a `run` or `exec` request; returns the new process (not yet exec'd)."""
        reply = await self.fork_server.request(req, fds)
        if "error" in reply:
            raise ForkServerError(str(reply["error"]))
        return ContainerProcess(int(reply["pid"]))


def _permitted_caps() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapPrm:"):
            return int(line.split()[1], 16)
    return 0
