"""One container's life in a stack: its restart loop, healthcheck, output and commands.

A `Service` is a task in the stack's nursery.  Its loop runs the container, waits for it,
asks `restart.decide` whether and when to run it again, and sleeps through the backoff
(a `stop` cancels that sleep).  Commands from the API (start, stop, restart, kill, pause)
change what the loop wants and wake it.  Every state change is an event.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Literal

import trio

from logging_bus.errors import LogBusError
from logging_bus.sources import tail_files
from logging_bus.store import LogStore
from supervisor import fdio, restart
from supervisor.container import Container, ExitInfo
from supervisor.errors import ContainerError, SupervisorError
from supervisor.events import EventBus
from supervisor.health import Health
from supervisor.protocol import ContainerState, HealthResult, HealthView

# What `attach` clients receive: ("stdout"|"stderr", bytes, None), or ("exit", b"", code).
Chunk = tuple[str, bytes, int | None]
HEALTH_OUTPUT_MAX = 4096  # Docker keeps 4 KiB of a check's output

Condition = Literal["service_started", "service_healthy", "service_completed_successfully"]


class DependencyFailed(SupervisorError):
    """A container this one depends on will not reach the required condition."""


class Service:
    def __init__(self, container: Container, events: EventBus, output: LogStore, *,
                 will_start: bool = True) -> None:
        self.container = container
        self.events = events
        self.output = output
        # A container about to start (possibly after its dependencies) shows as created,
        # not as what its record says of an earlier life.
        self.status = "exited" if container.record.status == "exited" and not will_start \
            else "created"
        if will_start:
            container.record.error = ""
        self.want_running = False
        self.restart_state = restart.RestartState()
        self.restart_count = 0
        self.next_restart_at: float | None = None
        self.health: Health | None = None
        self.paused = False
        self.started_once = False
        self.last_exit: ExitInfo | None = None
        self.failed: str = ""  # why it will not start (a dependency failed)
        self._wake = trio.Event()
        self._changed = trio.Event()
        self._backoff_scope: trio.CancelScope | None = None
        self._starting: trio.Event | None = None  # set while a start is in flight
        self.user_stops = 0  # how many times a user stopped it (a start must not undo one)
        self.scope = trio.CancelScope()  # the service's task; cancelled when it is removed
        # `attach` clients: live output frames; a full buffer drops the client, never blocks
        self.attachers: set[trio.MemorySendChannel[Chunk]] = set()
        self.stdin_fd: int | None = None  # pty master or stdin pipe, with stdin_open/tty
        self._run_started = 0.0

    @property
    def name(self) -> str:
        return self.container.name

    # -- state ---------------------------------------------------------------------------

    def _set(self, status: str) -> None:
        self.status = status
        self._changed.set()
        self._changed = trio.Event()

    def state(self) -> ContainerState:
        rec = self.container.record
        health = None
        if self.health is not None:
            health = HealthView(status=self.health.status,
                                failing_streak=self.health.failing_streak,
                                log=[HealthResult(start=r.start, end=r.end,
                                                  exit_code=r.exit_code, output=r.output)
                                     for r in self.health.log])
        status = "paused" if self.paused else self.status
        return ContainerState(
            status=status, running=self.status == "running", paused=self.paused,
            restarting=self.status == "restarting", oom_killed=rec.oom_killed,
            pid=rec.pid if self.status == "running" else 0, exit_code=rec.exit_code,
            error=self.failed or rec.error, started_at=rec.started_at,
            finished_at=rec.finished_at, restart_count=self.restart_count,
            next_restart_at=self.next_restart_at, stopped_by_user=rec.stopped_by_user,
            health=health)

    async def wait_for(self, condition: Condition) -> None:
        """Blocks until this service satisfies a dependant's `depends_on` condition."""
        while True:
            if self.failed:
                raise DependencyFailed(f"dependency {self.name} failed to start: {self.failed}")
            if condition == "service_started" and self.started_once:
                return
            if condition == "service_healthy":
                if self.health is not None and self.health.status == "healthy":
                    return
                if self.health is not None and self.health.status == "unhealthy":
                    raise DependencyFailed(f"dependency {self.name} is unhealthy")
            if condition == "service_completed_successfully" and self.status == "exited" \
                    and self.last_exit is not None:
                if self.last_exit.exit_code == 0:
                    return
                raise DependencyFailed(f"dependency {self.name} exited with code "
                                       f"{self.last_exit.exit_code}")
            if condition != "service_completed_successfully" and self.status == "exited" \
                    and self.started_once and not self.want_running:
                raise DependencyFailed(f"dependency {self.name} exited")
            await self._changed.wait()

    async def wait_exit(self) -> ExitInfo:
        """Docker's `wait`: until the current run ends (at once if not running)."""
        while self.status in ("running", "restarting") or (self.want_running and
                                                            self.status == "created"):
            await self._changed.wait()
        return self.last_exit or ExitInfo(self.container.record.exit_code or 0,
                                          self.container.record.oom_killed)

    # -- the loop ------------------------------------------------------------------------

    async def run(self, *, start: bool = True) -> None:
        """The service's task: runs until cancelled by the stack.  Its log files are tailed
        for the service's whole life, across restarts (positions are kept in the store)."""
        async with trio.open_nursery() as nursery:
            for root, host_dir, container_dir, pattern in self.container.log_dirs():
                nursery.start_soon(self._tail, root, host_dir, container_dir, pattern)
            await self._loop(start)

    async def _tail(self, root: Path, host_dir: Path, container_dir: str, pattern: str) -> None:
        """A log file tailer that fails alone: an event says why, the container runs on."""
        try:
            await tail_files(self.output, self.name, host_dir, container_dir, [pattern],
                             trusted_root=root)
        except (OSError, LogBusError) as e:
            self.events.publish("log_error", self.name, file=f"{container_dir}/{pattern}",
                                error=str(e))

    async def _loop(self, start: bool) -> None:
        self.want_running = start
        while True:
            if not self.want_running:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            info, ran_for = await self._one_run()
            self.last_exit = info
            if not self.want_running:
                self._set("exited")
                continue
            rec = self.container.record
            decision, self.restart_state = restart.decide(
                self.container.cfg.restart, self.container.cfg.restart_backoff,
                self.restart_state, exit_code=info.exit_code, oom_killed=info.oom_killed,
                stopped_by_user=rec.stopped_by_user, run_seconds=ran_for)
            if not decision.restart:
                self.want_running = False
                self._set("exited")
                continue
            self.next_restart_at = time.time() + decision.delay
            self.events.publish("restart", self.name, delay=f"{decision.delay:.3f}",
                                next_attempt=f"{self.next_restart_at:.3f}",
                                restart_count=self.restart_count + 1)
            self._set("restarting")
            with trio.CancelScope() as self._backoff_scope:
                await trio.sleep(decision.delay)
            self._backoff_scope = None
            self.next_restart_at = None
            if self.want_running:
                self.restart_count += 1
            else:
                self._set("exited")

    async def _one_run(self) -> tuple[ExitInfo, float]:
        c = self.container
        tty = c.cfg.tty
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        sources: list[tuple[int, str]] = []
        if tty:
            master, slave = os.openpty()
            os.set_inheritable(master, False)
            theirs = [slave]
            stdio = [slave, slave, slave]
            sources.append((master, "stdout"))
            self.stdin_fd = master  # `attach` types into the terminal
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            theirs = [out_w, err_w]
            stdin = devnull
            if c.cfg.stdin_open:  # `run -i`: stdin stays open for `attach`
                in_r, in_w = os.pipe2(os.O_CLOEXEC)
                theirs.append(in_r)
                stdin, self.stdin_fd = in_r, in_w
            stdio = [stdin, out_w, err_w]
            sources += [(out_r, "stdout"), (err_r, "stderr")]
        self._starting = trio.Event()
        try:
            self._run_started = trio.current_time()
            await c.start(*stdio)
        except ContainerError as e:
            for fd, _ in sources:
                os.close(fd)
            self._close_stdin(keep=tty)
            c.record.error = str(e)
            info = ExitInfo(e.exit_code)
            self.events.publish("die", self.name, exitCode=e.exit_code, error=str(e))
            self.output.append(self.name, "stderr", f"{e}\n".encode())
            self._to_attachers(("stderr", f"{e}\n".encode(), None))
            self._to_attachers(("exit", b"", e.exit_code))
            return info, 0.0
        finally:
            os.close(devnull)
            for fd in theirs:
                os.close(fd)
            self._starting.set()
            self._starting = None
        self.started_once = True
        self.paused = False
        self.health = None  # not the last run's result: this run's check starts `starting`
        self.events.publish("start", self.name, pid=c.record.pid)
        self._set("running")
        async with trio.open_nursery() as nursery:
            check = c.cfg.healthcheck
            if check is not None and check.enabled:
                nursery.start_soon(self._health_loop)
            async with trio.open_nursery() as pumps:
                for fd, stream in sources:
                    pumps.start_soon(self._pump, fd, stream)
                info = await c.wait()
                pumps.cancel_scope.deadline = trio.current_time() + 1  # bounded drain
            nursery.cancel_scope.cancel()
        self._close_stdin(keep=tty)
        ran_for = trio.current_time() - self._run_started
        self.paused = False
        if info.oom_killed:
            self.events.publish("oom", self.name)
        self.events.publish("die", self.name, exitCode=info.exit_code,
                            oomKilled=str(info.oom_killed).lower())
        self._to_attachers(("exit", b"", info.exit_code))
        return info, ran_for

    async def _pump(self, fd: int, stream: str) -> None:
        async for data in fdio.read_chunks(fd):
            self.output.append(self.name, stream, data)
            if self.attachers:
                self._to_attachers((stream, data, None))
            # A writer that keeps the pipe full would never let read_chunks wait, and so
            # never let another task run: the API stalled for 100s of ms (log benchmark).
            await trio.lowlevel.checkpoint()
        self.output.flush(self.name, stream)  # a last line without a newline
        if fd == self.stdin_fd:  # a pty master, just closed: no write may reach its number
            self.stdin_fd = None

    def _close_stdin(self, keep: bool) -> None:
        """Our end of a non-tty stdin pipe (a pty master is closed by its output pump)."""
        fd, self.stdin_fd = self.stdin_fd, None
        if fd is not None and not keep:
            fdio.close(fd)

    async def write_stdin(self, data: bytes) -> bool:
        """For `attach`: False when the container has no open stdin (any more).  Waits for
        room in the pipe rather than blocking the supervisor."""
        fd = self.stdin_fd
        if fd is None:
            return False
        try:
            return await fdio.write_all(fd, data)
        except (trio.ClosedResourceError, trio.BusyResourceError):
            return False  # the run ended meanwhile (its fd was closed), or two writers

    def close_stdin(self) -> None:
        """EOF from an attached client: the container sees EOF (a pipe), or ^D (a tty)."""
        if self.container.cfg.tty:
            fd = self.stdin_fd
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.write(fd, b"\x04")  # one byte into a pty: never blocks for long
        else:
            self._close_stdin(keep=False)

    def _to_attachers(self, frame: Chunk) -> None:
        for send in list(self.attachers):
            try:
                send.send_nowait(frame)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self.attachers.discard(send)
                send.close()

    # -- healthcheck ---------------------------------------------------------------------

    async def _health_loop(self) -> None:
        check = self.container.cfg.healthcheck
        assert check is not None
        health = Health(check, started_at=trio.current_time())
        self.health = health
        self._changed.set()
        self._changed = trio.Event()
        argv = list(check.test[1:]) if check.test[0] == "CMD" else ["/bin/sh", "-c",
                                                                    check.test[1]]
        try:
            while True:
                await trio.sleep_until(health.next_check_at(trio.current_time()))
                if self.paused:  # an exec would freeze in the frozen cgroup: skip, as Docker
                    await trio.sleep(0.1)
                    continue
                started = trio.current_time()
                code, output = await self._exec_capture(argv, check.timeout)
                before = health.status
                status = health.record(started=started, ended=trio.current_time(),
                                       exit_code=code, output=output)
                if status != before:
                    self.events.publish("health_status", self.name, status=status)
                    self._changed.set()
                    self._changed = trio.Event()
        finally:
            self.health = None if self.status != "running" else self.health

    async def _exec_capture(self, argv: list[str], timeout: float) -> tuple[int | None, str]:
        """Runs a check inside the container; None if it timed out (then it is killed)."""
        r, w = os.pipe2(os.O_CLOEXEC)
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            proc = await self.container.exec(argv, stdin=devnull, stdout=w, stderr=w)
        except ContainerError as e:
            os.close(r)
            return e.exit_code, str(e)
        finally:
            os.close(w)
            os.close(devnull)
        code: int | None = None
        output = b""
        with trio.move_on_after(timeout):
            output = await fdio.read_all(r, HEALTH_OUTPUT_MAX)
            code = await proc.wait()
        if code is None:
            proc.send_signal(signal.SIGKILL)
            with trio.CancelScope(shield=True):
                await proc.wait()
        return code, output.decode(errors="replace")

    # -- commands ------------------------------------------------------------------------

    def start(self) -> None:
        """Docker's `start`: clears the stopped-by-user mark and runs it (again)."""
        rec = self.container.record
        if rec.stopped_by_user:
            rec.stopped_by_user = False
            self.container.save()
        self.failed = ""
        if not self.want_running:
            self.want_running = True
            self.restart_state = restart.RestartState()
            self._wake.set()

    async def stop(self, timeout: float | None = None, *, by_user: bool = True) -> ExitInfo:
        """Stops the container and its restart loop; `by_user` marks it for unless-stopped
        (a stack shutdown does not)."""
        self.want_running = False
        if by_user:
            self.user_stops += 1
            if not self.container.record.stopped_by_user:
                self.container.record.stopped_by_user = True
                self.container.save()
        if self._backoff_scope is not None:
            self._backoff_scope.cancel()
        if self._starting is not None:  # a start in flight: stop what it starts
            await self._starting.wait()
        was_running = self.status == "running"
        if self.paused:
            self._thaw()
        info = await self.container.stop(timeout)
        while self.status in ("running", "restarting"):
            await self._changed.wait()
        if was_running:
            self.events.publish("stop", self.name)
        return info

    async def restart(self, timeout: float | None = None) -> None:
        await self.stop(timeout, by_user=False)
        self.restart_count += 1  # shown, like the shell's restart counter, also for a user's
        self.start()

    def kill(self, signal_number: int = signal.SIGKILL) -> None:
        """Docker's `kill`: a signal that ends the container also ends its restart loop."""
        if self.status != "running":
            raise ContainerError(self.name, "is not running")
        if signal_number in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            self.want_running = False
            self.container.record.stopped_by_user = True
            self.container.save()
        self.events.publish("kill", self.name, signal=signal_number)
        self.container.kill(signal_number)

    def pause(self) -> None:
        if self.status != "running" or self.paused:
            raise ContainerError(self.name, "is not running" if self.status != "running"
                                 else "is already paused")
        self.container.freeze(True)
        self.paused = True
        self.events.publish("pause", self.name)
        self._changed.set()
        self._changed = trio.Event()

    def unpause(self) -> None:
        if not self.paused:
            raise ContainerError(self.name, "is not paused")
        self._thaw()
        self.events.publish("unpause", self.name)

    def _thaw(self) -> None:
        with contextlib.suppress(SupervisorError):
            self.container.freeze(False)
        self.paused = False
        self._changed.set()
        self._changed = trio.Event()
