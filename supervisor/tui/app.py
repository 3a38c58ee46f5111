"""The full-screen shell: prompt_toolkit's Application over the model, the feed and the
command runner.

Redraws are bounded: data from the streams marks the screen dirty and one redraw follows at
most every REDRAW_INTERVAL (3 a second); keys redraw at once, so typing never lags.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prompt_toolkit.application import Application, run_in_terminal
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition, has_focus
from prompt_toolkit.history import History
from prompt_toolkit.input import Input
from prompt_toolkit.layout import (
    ConditionalContainer,
    Dimension,
    Float,
    FloatContainer,
    FormattedTextControl,
    HSplit,
    Layout,
    Window,
)
from prompt_toolkit.layout.controls import BufferControl
from prompt_toolkit.layout.menus import CompletionsMenu
from prompt_toolkit.layout.processors import BeforeInput
from prompt_toolkit.output import Output

from supervisor.client import AsyncClient
from supervisor.tui import fmt, view
from supervisor.tui.commands import (
    Builtin,
    Commands,
    Invalid,
    Parsed,
    Text,
    Verb,
    append_history,
    load_history,
)
from supervisor.tui.feed import Feed
from supervisor.tui.keys import bindings
from supervisor.tui.model import Model
from supervisor.tui.runner import Runner

REDRAW_INTERVAL = 1 / 3  # what a live table and log need, at half the CPU of 6 a second
OUTPUT_MAX_HEIGHT = 0.5  # of the terminal, for the output pane


class _History(History):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def load_history_strings(self) -> Iterable[str]:
        return reversed(load_history(self.path))  # newest first, as History expects

    def store_string(self, string: str) -> None:
        append_history(self.path, string)


class _Completer(Completer):
    def __init__(self, commands: Commands, names: Callable[[], list[str]]) -> None:
        self.commands = commands
        self.names = names

    def get_completions(self, document: Document, complete_event: CompleteEvent
                        ) -> Iterable[Completion]:
        for c in self.commands.complete(document.text_before_cursor, self.names()):
            # a whole word gets its space, as in bash; `web:` (cp) goes on with a path
            text = c.text if c.text.endswith(":") else c.text + " "
            yield Completion(text, start_position=c.start, display=c.text,
                             display_meta=c.meta)


class Shell:
    """One full-screen shell session; `await run()` until the user quits."""

    def __init__(self, model: Model, connect: Callable[[], AsyncClient], history: Path, *,
                 input: Input | None = None, output: Output | None = None,
                 timeout: float = 5.0) -> None:
        self.model = model
        self.commands = Commands(model.project)
        self.runner = Runner(model.project)
        self.feed = Feed(model, connect, self.changed, timeout=timeout)
        self._redraw_due = False
        self._last_redraw = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._command: asyncio.Task[None] | None = None
        self._interrupts = 0
        self._output_top: int | None = None  # the output pane's first line; None: its tail
        self._search_origin: tuple[str, int, bool, int] | None = None
        self.redraws = 0  # data-driven redraws, for the benchmark and tests

        self.cmd = Buffer(name="command", multiline=False, history=_History(history),
                          completer=_Completer(self.commands, model.names),
                          complete_while_typing=False, accept_handler=self._accept)
        self.search = Buffer(name="search", multiline=False,
                             on_text_changed=self._search_changed,
                             accept_handler=self._search_done)
        self.app: Application[int] = Application(
            layout=self._layout(), key_bindings=bindings(self), style=view.STYLE,
            full_screen=True, mouse_support=False, input=input, output=output,
            enable_page_navigation_bindings=False)
        self.app.ttimeoutlen = 0.05  # Esc acts at once (no Alt- sequences to wait for)

    # -- layout ---------------------------------------------------------------------------

    def _size(self) -> tuple[int, int]:
        size = self.app.output.get_size()
        return size.rows, size.columns

    def _layout(self) -> Layout:
        m = self.model

        def text(fn: Callable[[int], Any]) -> FormattedTextControl:
            return FormattedTextControl(lambda: fn(self._size()[1]), focusable=False)

        def table_height() -> Dimension:
            return Dimension.exact(1 + view.table_rows_for(m, self._size()[0]))

        def output_height() -> Dimension:
            cap = self._output_cap()
            lines = min(cap, max(1, len(m.output)))
            return Dimension(min=1, max=lines, preferred=lines)

        def output_lines() -> tuple[int, int]:
            return 0, len(m.output)

        self.output_window = Window(
            view.TailControl(output_lines, lambda i, w: view.output_line(m, i),
                             top=lambda: self._output_top),
            height=output_height)
        self.log_window = Window(view.TailControl(lambda: view.log_lines(m),
                                                  lambda i, w: view.log_line(m, i, w),
                                                  indent=lambda: view.log_indent(m)),
                                 height=Dimension(min=3), wrap_lines=False)
        command_line = ConditionalContainer(
            Window(BufferControl(self.cmd, input_processors=[BeforeInput(
                lambda: "… " if m.running else "> ", style="class:prompt")]), height=1),
            filter=~has_focus(self.search))
        search_line = ConditionalContainer(
            Window(BufferControl(self.search, input_processors=[
                BeforeInput("/", style="class:prompt")]), height=1),
            filter=has_focus(self.search))
        body = HSplit([
            Window(text(lambda w: view.title(m, w)), height=1),
            Window(text(lambda w: view.table(m, w, view.table_rows_for(m, self._size()[0]))),
                   height=table_height),
            Window(text(lambda w: view.detail(m, w)), height=2),
            Window(text(lambda w: view.log_title(m, w)), height=1),
            self.log_window,
            ConditionalContainer(HSplit([
                Window(text(lambda w: view.output_title(m, w)), height=1),
                self.output_window]),
                filter=Condition(lambda: m.output_shown)),
            Window(text(lambda w: view.status(m, w)), height=1),
            command_line,
            search_line,
            Window(text(lambda w: view.help_bar(self.mode, w)), height=1),
        ])
        root = FloatContainer(body, floats=[Float(xcursor=True, ycursor=True,
                                                  content=CompletionsMenu(max_height=8))])
        return Layout(root, focused_element=command_line)

    @property
    def mode(self) -> str:
        if self.app.layout.has_focus(self.search):
            return "search"
        if self.app.layout.has_focus(self.log_window):
            return "view"
        return "command"

    # -- redraws --------------------------------------------------------------------------

    def changed(self) -> None:
        """The model changed (from the streams): one redraw soon, at most 3 a second."""
        if self._redraw_due or self._loop is None:
            return
        self._redraw_due = True
        delay = max(0.0, self._last_redraw + REDRAW_INTERVAL - time.monotonic())
        self._loop.call_later(delay, self._redraw)

    def _redraw(self) -> None:
        self._redraw_due = False
        self._last_redraw = time.monotonic()
        self.redraws += 1
        self.app.invalidate()

    async def _tick(self) -> None:
        """Uptimes and the "next attempt in" countdown move without any data: once a second
        while one shows seconds, else every ten (an idle stack costs next to nothing)."""
        quiet = 0
        while True:
            await asyncio.sleep(1.0)
            quiet += 1
            if quiet >= 10 or self._seconds_shown():
                quiet = 0
                self.changed()

    def _seconds_shown(self) -> bool:
        now = time.time()
        for row in self.model.rows.values():
            if row.state.next_restart_at:
                return True
            age = fmt.since(row.state.started_at, now) if row.state.running else None
            if age is not None and age < 60:
                return True
        return False

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._loop.set_exception_handler(self._loop_error)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            self._loop.add_signal_handler(signum, self._leave, 128 + signum)
        tasks = [asyncio.create_task(self.feed.run()), asyncio.create_task(self._tick())]
        try:
            return await self.app.run_async(set_exception_handler=False)
        finally:
            if self._command is not None:
                self._command.cancel()
                tasks.append(self._command)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _leave(self, code: int) -> None:
        """A SIGTERM or a closed terminal: leave as `quit` does, so that a running command
        is ended too, not left behind."""
        future = self.app.future
        if self.app.is_running and future is not None and not future.done():
            self.app.exit(result=code)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """A bug of ours in a task: one line in the status bar, never a traceback screen."""
        error = context.get("exception")
        text = f"{type(error).__name__}: {error}" if error else context.get("message", "?")
        self.model.say(f"shell: internal error: {text}", error=True)
        self.changed()

    def submit(self, line: str) -> None:
        """Runs a command line as if typed (the view's keys use it too)."""
        self.execute(self.commands.parse(line), line)

    def execute(self, parsed: Parsed | None, line: str) -> None:
        m = self.model
        if parsed is None:
            return
        if isinstance(parsed, Invalid):
            m.say(parsed.message, error=True)
        elif isinstance(parsed, Text):
            self._show(line.strip(), parsed.text)
        elif isinstance(parsed, Builtin):
            self._builtin(parsed, line)
        elif self.runner.busy:
            m.say(f"`{m.running}` is still running: Ctrl-C stops it", error=True)
        elif parsed.terminal:
            self._command = asyncio.create_task(self._in_terminal(parsed, line.strip()))
        else:
            self._command = asyncio.create_task(self._run(parsed, line.strip()))
        self.app.invalidate()

    def _show(self, title: str, text: str) -> None:
        """A text to read from its top (help): the pane opens at its first line."""
        self.model.start_output(title)
        self.model.add_output(text.rstrip("\n"))
        self._output_top = 0
        if len(self.model.output) > self._output_cap():
            self.model.say("PgUp/PgDn scroll the output pane, Esc closes it")

    def _output_cap(self) -> int:
        return max(3, int(self._size()[0] * OUTPUT_MAX_HEIGHT) - 1)

    def _builtin(self, b: Builtin, line: str) -> None:
        m = self.model
        if b.name in ("quit", "exit"):
            self.app.exit(result=0)
        elif b.name == "help":
            self._show(line.strip(), self.commands.help(b.args))
        elif b.name == "clear":
            m.output_shown = False
            m.output.clear()
        elif b.name == "follow":
            target = b.args[0] if b.args else m.selected
            if target == "all" or target is None:
                self.follow(None)
            elif target not in m.rows:
                m.say(f"follow: {target}: no such container", error=True)
            else:
                self.follow(target)

    def follow(self, target: str | None) -> None:
        if target != self.model.target:
            self.model.follow(target)
            self.feed.retarget()
        self.model.say(f"the log pane follows {target or 'all containers'}")

    async def _run(self, verb: Verb, line: str) -> None:
        m = self.model
        m.running = line
        m.start_output(line)
        self._output_top = None
        self._interrupts = 0
        last_error = ""

        def add(text: str, stderr: bool) -> None:
            nonlocal last_error
            if stderr and text.strip():
                last_error = text.strip()
            m.add_output(text, stderr=stderr)
            self.changed()

        try:
            code = await self.runner.run(verb.argv, add)
        except OSError as e:
            m.say(f"{verb.name}: cannot run: {e.strerror or e}", error=True)
            return
        finally:
            m.running = None
            self.feed.refresh()
            self.changed()
        if code == 0:
            m.say(f"{line}: done")
        elif code < 0 or code == 130:
            m.say(f"{line}: stopped")
        else:
            m.say(f"{line}: exit {code}" + (f": {last_error}" if last_error else ""),
                  error=True)
        if not m.output:
            m.output_shown = False

    async def _in_terminal(self, verb: Verb, line: str) -> None:
        self.model.running = line
        try:
            code = await run_in_terminal(lambda: self.runner.run_in_terminal(verb.argv),
                                         in_executor=True)
        finally:
            self.model.running = None
            self.feed.refresh()
        self.model.say(f"{line}: exit {code}" if code else f"{line}: done", error=bool(code))

    # -- input handlers ----------------------------------------------------------------------

    def _accept(self, buffer: Buffer) -> bool:
        self.submit(buffer.text)
        return False  # clear the line (it is in the history)

    def _search_changed(self, buffer: Buffer) -> None:
        if self._search_origin is not None:
            self.model.logs.search(buffer.text, self._search_origin[1])

    def _search_done(self, buffer: Buffer) -> bool:
        self._search_origin = None
        self.app.layout.focus(self.log_window)  # n/N work at once, as in less
        return False

    def start_search(self) -> None:
        logs = self.model.logs
        self._search_origin = (logs.query, logs.bottom_index(), logs.following, logs.bottom)
        self.search.reset()
        self.app.layout.focus(self.search)

    def cancel_search(self) -> None:
        origin = self._search_origin
        self._search_origin = None
        logs = self.model.logs
        if origin is not None:
            query, _, following, bottom = origin
            logs.search(query) if query else logs.search("")
            logs.following, logs.bottom = following, bottom
        self.search.reset()
        self.app.layout.focus(self.cmd)

    def interrupt(self) -> None:
        """Ctrl-C: stops the running command (SIGINT; the third time SIGKILL), else cancels
        a search or clears the line."""
        if self.runner.busy:
            self._interrupts += 1
            if self._interrupts >= 3 and self.runner.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    self.runner.proc.kill()
            else:
                self.runner.interrupt()
        elif self.mode == "search":
            self.cancel_search()
        elif self.cmd.text:
            self.cmd.reset()
        else:
            self.model.say("Ctrl-D or `quit` leaves the shell")

    def scroll(self, pages: int) -> None:
        rows, _ = self._size()
        if self.model.output_shown:
            info = self.output_window.render_info
            height = info.window_height if info else self._output_cap()
            lines = len(self.model.output)
            top = max(0, lines - height) if self._output_top is None else self._output_top
            top = max(0, top + pages * max(1, height - 1))
            self._output_top = None if top + height >= lines else top
        else:
            self.model.logs.scroll(pages * max(1, rows // 3))

    def action(self, verb: str) -> None:
        name = self.model.selected
        if name:
            self.submit(f"{verb} {name}")


def run(model: Model, connect: Callable[[], AsyncClient], history: Path) -> int:
    """The full-screen shell on this terminal, until quit."""
    return asyncio.run(Shell(model, connect, history).run())
