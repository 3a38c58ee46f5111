"""The supervisor process: one project's stack, its API, its signals.

`supervise` runs in the foreground (`up`) or detached (`up -d`, `run -d`: the same code in a
process of its own, started by `spawn_detached`).  Ctrl-C or SIGTERM stops the stack in
reverse dependency order; a second Ctrl-C kills every container at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

import trio

from supervisor import config
from supervisor.api import Api
from supervisor.events import EventBus
from supervisor.httpserver import serve_unix
from supervisor.paths import ProjectPaths
from supervisor.protocol import Event
from supervisor.runtime import Runtime
from supervisor.service import OutputSink
from supervisor.stack import Stack, project_lock


async def supervise(stack_cfg: config.Stack, paths: ProjectPaths, *, output: OutputSink,
                    notice: Callable[[str], None], on_event: Callable[[Event], None] | None
                    = None, abort_on_container_exit: bool = False,
                    exit_code_from: str | None = None,
                    task_status: trio.TaskStatus[Stack] = trio.TASK_STATUS_IGNORED) -> int:
    """Runs the project until shut down; returns the process's exit code."""
    with project_lock(paths), Runtime() as runtime:
        events = EventBus()
        if on_event is not None:
            events.on_event(on_event)
        stack = Stack(stack_cfg, paths, runtime, output, events, notice)
        api = Api(stack)
        result = {"code": 0}
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_unix, api.router, str(paths.run / "api.sock"))
            nursery.start_soon(_signals, stack)
            if abort_on_container_exit or exit_code_from:
                events.on_event(_abort_watch(stack, result, exit_code_from))
            await nursery.start(stack.run)
            task_status.started(stack)
            await stack.finished.wait()
            nursery.cancel_scope.cancel()
        return result["code"]


def _abort_watch(stack: Stack, result: dict[str, int],
                 exit_code_from: str | None) -> Callable[[Event], None]:
    """Compose's --abort-on-container-exit / --exit-code-from."""

    def watch(event: Event) -> None:
        if event.action != "die" or stack.shutting_down:
            return
        if exit_code_from is None or event.container == exit_code_from:
            result["code"] = int(event.attributes.get("exitCode", "0"))
            stack.notice(f"{event.container} exited: aborting on container exit")
            stack.shutdown()

    return watch


async def _signals(stack: Stack) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        count = 0
        async for _sig in signals:
            count += 1
            if count == 1:
                stack.notice("Gracefully stopping... (press Ctrl+C again to force)")
                stack.shutdown()
            else:
                stack.notice("Killing...")
                stack.kill_all()


def spawn_detached(argv: list[str], paths: ProjectPaths) -> subprocess.Popen[bytes]:
    """Starts `supervise _serve ...` in a session of its own; its notices go to a log file
    in the runtime directory (container output goes to the log bus)."""
    paths.run.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = open(paths.run / "supervisor.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen([sys.executable, "-m", "supervisor", *argv],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True,
                                env=os.environ | {"PYTHONUNBUFFERED": "1"})
    finally:
        log.close()
