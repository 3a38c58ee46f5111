"""The full-screen shell's keys (docs/shell.md, "Keys"): the command line has them first;
Esc hands them to the view, `:` takes them back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prompt_toolkit.filters import Condition, has_focus
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

from supervisor.tui.commands import Builtin

if TYPE_CHECKING:
    from supervisor.tui.app import Shell


def bindings(shell: Shell) -> KeyBindings:
    kb = KeyBindings()
    m = shell.model
    command = has_focus(shell.cmd)
    viewing = has_focus(shell.log_window)
    searching = has_focus(shell.search)
    empty = Condition(lambda: not shell.cmd.text)

    @kb.add("c-c")
    def _(event: KeyPressEvent) -> None:
        shell.interrupt()

    @kb.add("c-d", filter=command & empty)
    @kb.add("q", filter=viewing)
    def _(event: KeyPressEvent) -> None:
        event.app.exit(result=0)

    @kb.add("f1")
    def _(event: KeyPressEvent) -> None:
        shell.execute(Builtin("help", []), "help")

    @kb.add("pageup")
    def _(event: KeyPressEvent) -> None:
        shell.scroll(-1)

    @kb.add("pagedown")
    def _(event: KeyPressEvent) -> None:
        shell.scroll(1)

    @kb.add("c-up")
    @kb.add("s-up")
    @kb.add("up", filter=viewing)
    @kb.add("k", filter=viewing)
    def _(event: KeyPressEvent) -> None:
        m.select(-1)

    @kb.add("c-down")
    @kb.add("s-down")
    @kb.add("down", filter=viewing)
    @kb.add("j", filter=viewing)
    def _(event: KeyPressEvent) -> None:
        m.select(1)

    @kb.add("escape", filter=command)
    @kb.add("f2", filter=command)
    def _(event: KeyPressEvent) -> None:
        if m.output_shown:
            m.output_shown = False
        else:
            event.app.layout.focus(shell.log_window)

    @kb.add("/", filter=(command & empty) | viewing)
    def _(event: KeyPressEvent) -> None:
        shell.start_search()

    @kb.add("escape", filter=searching)
    def _(event: KeyPressEvent) -> None:
        shell.cancel_search()

    @kb.add("escape", filter=viewing)
    @kb.add("f2", filter=viewing)
    @kb.add(":", filter=viewing)
    @kb.add("i", filter=viewing)
    def _(event: KeyPressEvent) -> None:
        event.app.layout.focus(shell.cmd)

    @kb.add("enter", filter=viewing)
    def _(event: KeyPressEvent) -> None:
        shell.follow(m.selected)

    @kb.add("a", filter=viewing)
    def _(event: KeyPressEvent) -> None:
        shell.follow(None)

    @kb.add("n", filter=viewing)
    def _(event: KeyPressEvent) -> None:
        if not m.logs.next(-1):
            m.say("no match" if m.logs.pattern else "no search: / starts one")

    @kb.add("N", filter=viewing)
    def _(event: KeyPressEvent) -> None:
        if not m.logs.next(1):
            m.say("no match" if m.logs.pattern else "no search: / starts one")

    @kb.add("p", filter=viewing)
    @kb.add("space", filter=viewing)
    def _(event: KeyPressEvent) -> None:
        m.logs.toggle()

    @kb.add("G", filter=viewing)
    @kb.add("end", filter=viewing)
    def _(event: KeyPressEvent) -> None:
        m.logs.resume()

    @kb.add("g", filter=viewing)
    @kb.add("home", filter=viewing)
    def _(event: KeyPressEvent) -> None:
        m.logs.pause()
        m.logs.bottom = m.logs.dropped + 1

    for key, verb in (("r", "restart"), ("s", "stop"), ("S", "start")):
        kb.add(key, filter=viewing)(lambda event, verb=verb: shell.action(verb))
    return kb
