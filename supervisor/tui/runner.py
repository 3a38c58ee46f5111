"""Runs a CLI verb for the full-screen shell: `python -m supervisor -p PROJECT ARGV...` as a
child process, its output streamed into the output pane.

A child rather than a call into `cli.main` in this process: the verb then is the CLI's own
code path with its own exit code, it cannot block the event loop that draws the screen, and
Ctrl-C (SIGINT to the child, by its pid) ends even an endless one (`logs -f`, `events`,
`stats`, `wait`) the way it ends it on the command line.  Verbs that need the terminal
(`exec -it`, `run -it`) get it: the full-screen view steps aside while they run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable

MAX_LINE = 1 << 16


def argv_for(project: str, argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "supervisor", "-p", project, *argv]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # a streaming verb's lines arrive as they are printed
    env["NO_COLOR"] = "1"
    return env


class Runner:
    """One command at a time."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def busy(self) -> bool:
        return self.proc is not None

    async def run(self, argv: list[str], line: Callable[[str, bool], None]) -> int:
        """The verb's exit code; each output line to `line(text, is_stderr)`."""
        self.proc = await asyncio.create_subprocess_exec(
            *argv_for(self.project, argv), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(),
            limit=MAX_LINE)  # our process group: a closed terminal hangs it up with us
        try:
            assert self.proc.stdout is not None and self.proc.stderr is not None
            await asyncio.gather(_pump(self.proc.stdout, line, False),
                                 _pump(self.proc.stderr, line, True))
            return await self.proc.wait()
        finally:
            if self.proc.returncode is None:  # cancelled (the shell quits): end it
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
            self.proc = None

    def interrupt(self) -> bool:
        """Ctrl-C for the running verb: SIGINT, as a terminal would send it."""
        if self.proc is None or self.proc.returncode is not None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGINT)
        return True

    def run_in_terminal(self, argv: list[str]) -> int:
        """A verb that needs the terminal (called while the full screen is suspended)."""
        try:
            return subprocess.run(argv_for(self.project, argv), check=False).returncode
        except KeyboardInterrupt:
            return 130


async def _pump(stream: asyncio.StreamReader, line: Callable[[str, bool], None],
                stderr: bool) -> None:
    while True:
        try:
            data = await stream.readline()
        except ValueError:  # a line over MAX_LINE: take what is there
            data = await stream.read(MAX_LINE)
        if not data:
            return
        line(data.decode(errors="replace").rstrip("\n"), stderr)
