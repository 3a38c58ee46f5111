"""The full-screen shell driven through prompt_toolkit's pipe input, drawn on a dummy output
of a real size, against a fake supervisor (our own API's shapes, on a real Unix socket); the
verbs it runs are the real CLI in a child process.  The plain REPL runs as `supervise shell`
with stdin and stdout on pipes."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import msgspec
import pytest
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from supervisor.client import AsyncClient, _Chunks
from supervisor.errors import ApiError, NoSupervisor
from supervisor.paths import ProjectPaths
from supervisor.tui.app import Shell
from supervisor.tui.commands import load_history
from supervisor.tui.model import Model
from tests.unit.toy_api import FakeStack, ServerThread, fake_row, make_stack_router


class Screen(DummyOutput):
    """Draws nowhere, but has a size: the layout is computed for it."""

    def __init__(self, rows: int, columns: int) -> None:
        self.size = Size(rows=rows, columns=columns)

    def get_size(self) -> Size:
        return self.size


class Fake:
    def __init__(self, project: ProjectPaths) -> None:
        project.run.mkdir(parents=True, exist_ok=True)
        self.stack = FakeStack(rows={
            "web": fake_row("web", ports=("8080->80/tcp",)),
            "db": fake_row("db"),
            "flaky": fake_row("flaky", status="restarting", restarts=3)})
        self.server = ServerThread(project.run / "api.sock", make_stack_router(self.stack))
        # held as a supervisor holds it: the CLI's `logs` asks the lock whether one runs
        self.lock = os.open(project.run / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        fcntl.flock(self.lock, fcntl.LOCK_EX)

    def log(self, container: str, text: str) -> None:
        self.server.call(lambda: self.stack.log(container, text))


@pytest.fixture
def fake(project: ProjectPaths) -> Iterator[Fake]:
    f = Fake(project)
    f.server.start()
    yield f
    f.server.stop()
    os.close(f.lock)


def text_of(shell: Shell) -> str:
    screen = shell.app.renderer.last_rendered_screen
    if screen is None:
        return ""
    size = shell.app.output.get_size()
    return "\n".join("".join(screen.data_buffer[y][x].char for x in range(size.columns))
                     .rstrip() for y in range(size.rows))


async def until(shell: Shell, what: str, check: Callable[[], bool] | None = None) -> None:
    """Waits for `what` on the screen (or for `check`), redrawing as the shell would."""
    deadline = asyncio.get_running_loop().time() + 15
    while not (check() if check else what in text_of(shell)):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"waited for {what!r}; the screen:\n{text_of(shell)}")
        await asyncio.sleep(0.02)


Script = Callable[[Shell, PipeInput], Awaitable[None]]


def run_shell(project: ProjectPaths, script: Script, *, rows: int = 24, columns: int = 80,
              history: Path | None = None) -> Shell:
    """A Shell on a pipe input until `script` is done, then Ctrl-D; it must quit with 0."""
    sock = str(project.run / "api.sock")
    result: list[Shell] = []

    async def main() -> None:
        with create_pipe_input() as keys:
            shell = Shell(Model(project.project),
                          lambda: AsyncClient(sock, timeout=2, project=project.project),
                          history or project.run / "history", input=keys,
                          output=Screen(rows, columns))
            result.append(shell)
            task = asyncio.create_task(shell.run())
            try:
                await script(shell, keys)
                keys.send_text("\x15\x04")  # Ctrl-U (an empty line), Ctrl-D
                assert await asyncio.wait_for(task, 10) == 0
            finally:
                task.cancel()

    asyncio.run(main())
    return result[0]


def test_table_stats_and_sparklines_at_80x24(project: ProjectPaths, fake: Fake) -> None:
    async def script(shell: Shell, keys: PipeInput) -> None:
        await until(shell, "flaky")
        await until(shell, "3 samples", lambda: "web" in shell.model.stats
                    and len(shell.model.stats["web"].history) >= 3)
        await until(shell, "M/64.0M")
        screen = text_of(shell)
        lines = screen.splitlines()
        assert len(lines) == 24 and max(len(line) for line in lines) <= 80
        assert "supervise · " + project.project + " · 2/3 running" in lines[0]
        # no healthchecks in this stack: no HEALTH column, the room goes to the ports
        assert lines[1].split() == ["NAME", "STATE", "RESTARTS", "UPTIME", "CPU%", "MEMORY",
                                    "PIDS", "PORTS"]
        row = next(line for line in lines if line.startswith("flaky"))
        assert "restarting" in row and "3 in " in row  # the next attempt, crash-looping
        web = next(line for line in lines if line.startswith("web"))
        assert "1m" in web and "/64.0M" in web and "8080->80/tcp" in web
        assert "░" in web
        assert "cpu" in screen and "mem" in screen and "of 64.0M (5m)" in screen
        assert any(c in screen for c in "▁▂▃▄▅▆▇█")
        assert "logs: all · following" in screen
        assert "⏎ run" in lines[-1]  # the help bar

    run_shell(project, script)


def test_wide_terminal_shows_cpu_history_and_ports(project: ProjectPaths, fake: Fake) -> None:
    async def script(shell: Shell, keys: PipeInput) -> None:
        await until(shell, "8080->80/tcp")
        assert "CPU 60s" in text_of(shell)

    run_shell(project, script, rows=40, columns=130)


def test_a_typed_verb_runs_the_cli_and_the_event_shows(project: ProjectPaths,
                                                       fake: Fake) -> None:
    async def script(shell: Shell, keys: PipeInput) -> None:
        await until(shell, "flaky")
        keys.send_text("restart web\r")
        await until(shell, "restart web: done")
        assert fake.stack.requests == ["restart web"]
        await until(shell, "● web start")  # the event in the log pane
        assert "● web die exitCode=143" in text_of(shell)
        await until(shell, "output: restart web")

        def web_restarts() -> str:
            return next(line for line in text_of(shell).splitlines()
                        if line.startswith("web ")).split()[2]

        await until(shell, "web's RESTARTS at 1", lambda: web_restarts() == "1")

    run_shell(project, script)


def test_a_bad_command_is_one_line_and_the_shell_lives_on(project: ProjectPaths,
                                                          fake: Fake) -> None:
    async def script(shell: Shell, keys: PipeInput) -> None:
        await until(shell, "flaky")
        keys.send_text("bogus web\r")
        await until(shell, "shell: bogus: unknown command; `help` lists them")
        keys.send_text("restart ghost\r")  # the CLI's own error, from the child
        await until(shell, "restart ghost: exit 1: Error response from supervisor: No such "
                    "container: ghost")
        keys.send_text("restart\r")
        await until(shell, "supervise restart: the following arguments are required: NAME")
        keys.send_text("help\r")
        await until(shell, "output: help")
        assert "Every supervise verb" in text_of(shell)
        keys.send_text("\x1b")  # Esc closes the output pane
        await until(shell, "closed", lambda: not shell.model.output_shown)

    run_shell(project, script)


def test_completion_and_history_persist(project: ProjectPaths, fake: Fake,
                                        tmp_path: Path) -> None:
    history = tmp_path / "history"

    async def first(shell: Shell, keys: PipeInput) -> None:
        await until(shell, "flaky")
        keys.send_text("res\t")
        await until(shell, "> restart", lambda: shell.cmd.text == "restart ")
        keys.send_text("fl\t")
        await until(shell, "> restart flaky", lambda: shell.cmd.text == "restart flaky ")
        keys.send_text("\x15follow w\t")
        await until(shell, "follow web", lambda: shell.cmd.text == "follow web ")
        keys.send_text("\r")
        await until(shell, "logs: web · following")

    run_shell(project, first, history=history)
    assert load_history(history) == ["follow web"]

    async def second(shell: Shell, keys: PipeInput) -> None:
        keys.send_text("\x1b[A")  # Up: the last session's line
        await until(shell, "> follow web", lambda: shell.cmd.text == "follow web")

    run_shell(project, second, history=history)


def test_log_pane_search_and_pause(project: ProjectPaths, fake: Fake) -> None:
    async def script(shell: Shell, keys: PipeInput) -> None:
        await until(shell, "flaky")
        for i in range(30):
            fake.log("web" if i % 2 else "db", f"request {i} ok")
        fake.log("web", "a needle in the logs")
        fake.log("db", "after the needle")
        await until(shell, "after the needle")
        keys.send_text("/need")  # incremental: each key searches
        await until(shell, "/need  2/2")
        keys.send_text("le\r")  # Enter keeps it; the view's keys now: n/N
        await until(shell, "view", lambda: shell.mode == "view")
        keys.send_text("n")
        await until(shell, "/needle  1/2")
        assert "a needle in the logs" in text_of(shell)
        keys.send_text("N")
        await until(shell, "/needle  2/2")
        fake.log("web", "a line while paused")
        await until(shell, "paused, 1 new")
        assert "a line while paused" not in text_of(shell)
        keys.send_text("G")  # newest: following again
        await until(shell, "a line while paused")
        keys.send_text("p")
        await until(shell, "logs: all · paused")
        keys.send_text("p:")  # resume, then back to the command line
        await until(shell, "command", lambda: shell.mode == "command")

    run_shell(project, script)


def test_ctrl_c_stops_an_endless_verb(project: ProjectPaths, fake: Fake) -> None:
    async def script(shell: Shell, keys: PipeInput) -> None:
        await until(shell, "flaky")
        keys.send_text("logs -f web\r")
        await until(shell, "running, Ctrl-C stops it")
        fake.log("web", "streamed to the output pane")
        await until(shell, "streamed", lambda: any("streamed to the output pane" in t
                                                   for t, _ in shell.model.output))
        keys.send_text("ps\r")
        await until(shell, "`logs -f web` is still running: Ctrl-C stops it")
        keys.send_text("\x03")
        await until(shell, "logs -f web: ")
        assert shell.model.running is None

    run_shell(project, script)


def test_sigterm_leaves_as_quit_and_ends_the_running_verb(project: ProjectPaths,
                                                           fake: Fake) -> None:
    sock = str(project.run / "api.sock")

    async def main() -> tuple[int, int]:
        with create_pipe_input() as keys:
            shell = Shell(Model(project.project),
                          lambda: AsyncClient(sock, timeout=2, project=project.project),
                          project.run / "history", input=keys, output=Screen(24, 80))
            task = asyncio.create_task(shell.run())
            await until(shell, "flaky")
            keys.send_text("events\r")
            await until(shell, "running, Ctrl-C stops it")
            for _ in range(500):  # the line shows as the child is being spawned
                if shell.runner.proc is not None:
                    break
                await asyncio.sleep(0.01)
            assert shell.runner.proc is not None
            child = shell.runner.proc.pid
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the shell's loop
            return await asyncio.wait_for(task, 10), child

    code, child = asyncio.run(main())
    assert code == 128 + signal.SIGTERM
    assert not Path(f"/proc/{child}").exists()  # ended and reaped, not left behind


def test_the_supervisor_goes_and_comes_back(project: ProjectPaths, fake: Fake) -> None:
    async def script(shell: Shell, keys: PipeInput) -> None:
        await until(shell, "flaky")
        fake.server.stop()
        await until(shell, "offline, retrying in")
        assert "· offline" in text_of(shell).splitlines()[0]
        keys.send_text("follow db\r")  # the shell still answers
        await until(shell, "logs: db")
        fake.stack.rows["api"] = fake_row("api")
        fake.stack.changed = type(fake.stack.changed)()
        fake.server.start()
        await until(shell, "connected to the supervisor of project")
        await until(shell, "api")
        assert "offline" not in text_of(shell).splitlines()[0]
        assert shell.feed.sessions == 2

    run_shell(project, script)


def plain(project: ProjectPaths, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supervisor", "-p", project.project, "shell",
                           *args], input=script, capture_output=True, text=True, timeout=60)


def test_plain_repl_runs_the_same_commands(project: ProjectPaths, fake: Fake) -> None:
    r = plain(project, "ps -q\nbogus\nrestart web\n# comment\nhelp restart\nfollow web\n"
                       "restart ghost\n")
    assert r.stdout.splitlines()[:4] == ["db", "flaky", "web", "web"]
    assert "usage: supervise restart" in r.stdout
    assert r.stderr.splitlines() == [
        "shell: bogus: unknown command; `help` lists them",
        "follow: only in the full-screen shell (here: logs -f NAME)",
        "Error response from supervisor: No such container: ghost"]
    assert r.returncode == 1  # the last command's status, as sh
    assert fake.stack.requests == ["restart web"]
    assert plain(project, "ps -q\nexit 3\nps\n").returncode == 3
    assert plain(project, "ps -q\n", "--plain").returncode == 0


def test_lines_reads_the_streams_on_asyncio(project: ProjectPaths, fake: Fake,
                                            tmp_path: Path) -> None:
    """The client's lean NDJSON reader that the shell's streams use."""
    fake.log("web", "one")
    fake.log("db", "two")
    client = AsyncClient(str(project.run / "api.sock"), timeout=2, project=project.project)

    async def main() -> None:
        got = [msgspec.json.decode(line)["line"] async for line in client.lines("/logs")]
        assert got == ["one", "two"]  # not following: the stream ends, and so do we
        assert [x async for x in client.lines("/containers/web/logs", raw=1)] == [b"one"]
        paced = client.lines("/logs", pace=0.01, follow=1)
        assert msgspec.json.decode(await anext(paced))["line"] == "one"
        await paced.aclose()
        with pytest.raises(ApiError, match=r"^No such container: ghost$"):
            async for _ in client.lines("/containers/ghost/logs"):
                pass
        gone = AsyncClient(str(tmp_path / "none.sock"), timeout=2, project="gone")
        with pytest.raises(NoSupervisor, match="no supervisor for project 'gone'"):
            async for _ in gone.lines("/events"):
                pass

    asyncio.run(main())


def test_chunked_body_in_any_pieces() -> None:
    body = b"6\r\nhello\n\r\n4;ext=1\r\nab\nc\r\n0\r\n\r\n"
    for cut in range(len(body) + 1):
        chunks = _Chunks()
        first, done = chunks.feed(body[:cut])
        rest, done = chunks.feed(body[cut:])
        assert first + rest == b"hello\nab\nc" and done
    with pytest.raises(OSError, match="bad chunk size"):
        _Chunks().feed(b"zz\r\n")
