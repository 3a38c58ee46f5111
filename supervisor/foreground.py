"""`supervise run` in the foreground, in-process: one container, its output on ours.

Docker's attached `run`: stdout and stderr stream to ours, stdin is passed only with `-i`,
a pty with `-t`; signals we receive are proxied to the container (`--sig-proxy`), and a
second Ctrl-C kills it.  The exit code is the container's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios
import tty as ttymod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import trio

from supervisor import config, fdio
from supervisor.config_net import StackNetwork
from supervisor.container import Container, list_records
from supervisor.errors import ContainerError
from supervisor.network import open_stack_network
from supervisor.paths import ProjectPaths
from supervisor.runtime import ContainerProcess, Runtime
from supervisor.stack import project_lock

PROXIED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                   signal.SIGUSR1, signal.SIGUSR2)


async def pump(src: int, dst: int) -> None:
    """Copies a pipe (or pty master) to an fd until EOF; dst is written blocking, as a
    terminal or a test's pipe expects."""
    async for data in fdio.read_chunks(src):
        view = memoryview(data)
        while view:
            view = view[os.write(dst, view):]


async def feed(src: int, master: int) -> None:
    """Our stdin into the container's pty.  stdin stays ours: blocking, and open after."""
    try:
        while True:
            await trio.lowlevel.wait_readable(src)
            data = os.read(src, 65536)
            if not data or not await fdio.write_all(master, data):
                return
    except trio.ClosedResourceError:  # the output pump closed the master: the end
        return


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    ttymod.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def run_container(cfg: config.Container, paths: ProjectPaths, *, remove: bool,
                        interactive: bool) -> int:
    if cfg.links or cfg.network_mode.startswith("container:"):
        raise ContainerError(cfg.name, "links and network_mode container: need the project's "
                             "supervisor (supervise up, or run -d)")
    with project_lock(paths, shared=True), Runtime() as runtime:
        peers = {rec.name: rec for rec in list_records(paths)}
        container = Container.create(runtime, paths, cfg, peers)

        async def wait() -> int:
            return (await container.wait()).exit_code

        async def attach() -> int:
            return await _attach(container.start, wait, container.kill, tty=cfg.tty,
                                 interactive=interactive)

        try:
            if cfg.network_mode != "bridge":
                return await attach()
            # No supervisor runs: a network of the container's own, as `docker run` gets the
            # default bridge (with outbound access; other containers' names do not resolve).
            async with open_stack_network(paths, StackNetwork(), persist=False) as network:
                container.network = network
                return await attach()
        finally:
            if remove:
                container.remove(volumes=True)


async def exec_in_container(paths: ProjectPaths, name: str, argv: list[str], *,
                            env: dict[str, str], user: str | None, workdir: str | None,
                            interactive: bool, tty: bool) -> int:
    """`supervise exec`: joins a container that another supervise process runs."""
    with Runtime() as runtime:
        container = Container.load(runtime, paths, name)
        procs: list[ContainerProcess] = []

        async def start(stdin: int, stdout: int, stderr: int) -> object:
            procs.append(await container.exec(argv, stdin=stdin, stdout=stdout, stderr=stderr,
                                              env=env, user=user, workdir=workdir, tty=tty))
            return procs[0]

        async def wait() -> int:
            return await procs[0].wait()

        def kill(sig: int) -> None:
            if procs:
                procs[0].send_signal(sig)

        return await _attach(start, wait, kill, tty=tty, interactive=interactive)


async def _attach(start: Callable[[int, int, int], Awaitable[object]],
                  wait: Callable[[], Awaitable[int]], kill: Callable[[int], None], *,
                  tty: bool, interactive: bool) -> int:
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    to_close = [devnull]
    pumps: list[tuple[int, int]] = []
    stdin = sys.stdin.fileno() if interactive else devnull
    if tty:
        master, slave = os.openpty()
        to_close += [slave]
        stdio = [slave, slave, slave]
        pumps.append((master, sys.stdout.fileno()))
    else:
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        to_close += [out_w, err_w]
        stdio = [stdin, out_w, err_w]
        pumps += [(out_r, sys.stdout.fileno()), (err_r, sys.stderr.fileno())]
    try:
        with trio.open_signal_receiver(*PROXIED_SIGNALS) as signals:
            await start(*stdio)
            for fd in to_close:  # the container holds its own copies now
                os.close(fd)
            to_close = []
            with raw_terminal(sys.stdin.fileno()) if tty and interactive \
                    else contextlib.nullcontext():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_proxy_signals, signals, kill)
                    if tty and interactive:
                        nursery.start_soon(feed, sys.stdin.fileno(), pumps[0][0])
                    async with trio.open_nursery() as output:
                        for src, dst in pumps:
                            output.start_soon(pump, src, dst)  # it closes src
                        pumps = []
                        code = await wait()
                        # Every process of the container is gone, so EOF is near: bounded drain.
                        output.cancel_scope.deadline = trio.current_time() + 2
                    nursery.cancel_scope.cancel()
            return code
    finally:
        for fd in to_close:
            os.close(fd)
        for src, _ in pumps:
            with contextlib.suppress(OSError):
                os.close(src)


async def _proxy_signals(signals: AsyncIterator[int], kill: Callable[[int], None]) -> None:
    interrupts = 0
    async for sig in signals:
        if sig == signal.SIGINT:
            interrupts += 1
            if interrupts >= 2:
                kill(signal.SIGKILL)  # a second Ctrl-C kills at once
                continue
        kill(sig)
