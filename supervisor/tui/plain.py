"""`supervise shell --plain`: the shell's commands as a line-oriented REPL, for scripts,
screen readers and terminals that cannot draw a full screen.

Each line runs through `cli.main` in this process, so its output, its errors and its exit
code are the CLI's own, written straight to our stdout and stderr.  At the end of input the
REPL exits with the status of the last command, as `sh` does.  On a terminal, the line is
edited with readline: the same completion and the same history file as the full screen.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from supervisor.tui.commands import Builtin, Commands, Invalid, Text, append_history, load_history

PROMPT = "supervise> "


def repl(commands: Commands, history: Path, names: Callable[[], list[str]], *,
         stdin: TextIO | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    interactive = stdin.isatty()
    if interactive and stdin is sys.stdin:
        _readline(commands, history, names)
    status = 0
    while True:
        try:
            line = _read(stdin, stdout, stderr, interactive)
        except KeyboardInterrupt:
            stderr.write("\n")
            continue
        if line is None:
            return status
        parsed = commands.parse(line)
        if parsed is None:
            continue
        if interactive:
            append_history(history, line)
        if isinstance(parsed, Invalid):
            print(parsed.message, file=stderr, flush=True)
            status = 2
        elif isinstance(parsed, Text):
            stdout.write(parsed.text)
            stdout.flush()
            status = 0
        elif isinstance(parsed, Builtin):
            if parsed.name in ("quit", "exit"):
                return _exit_code(parsed.args, status, stderr)
            status = _builtin(commands, parsed, stdout, stderr)
        else:
            status = run_verb(commands.project, parsed.argv, stderr)


def run_verb(project: str, argv: list[str], stderr: TextIO) -> int:
    """`supervise -p PROJECT ARGV...`, in this process; whatever happens, the REPL lives."""
    from supervisor.cli import main

    try:
        return main(["-p", project, *argv])
    except SystemExit as e:  # argparse's --help, or a verb that exits
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug in a verb: one line, and the shell goes on
        print(f"shell: {argv[0]}: internal error: {type(e).__name__}: {e}", file=stderr,
              flush=True)
        return 1
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()


def _builtin(commands: Commands, b: Builtin, stdout: TextIO, stderr: TextIO) -> int:
    if b.name == "help":
        print(commands.help(b.args, keys=False), file=stdout, flush=True)
        return 0
    print(f"{b.name}: only in the full-screen shell"
          + (" (here: logs -f NAME)" if b.name == "follow" else ""), file=stderr, flush=True)
    return 1


def _exit_code(args: list[str], status: int, stderr: TextIO) -> int:
    if not args:
        return status
    try:
        return int(args[0])
    except ValueError:
        print(f"exit: expected a number, got {args[0]!r}", file=stderr, flush=True)
        return 2


def _read(stdin: TextIO, stdout: TextIO, stderr: TextIO, interactive: bool) -> str | None:
    if not interactive:
        line = stdin.readline()
        return line if line else None
    try:
        if stdin is sys.stdin and stdout.isatty():
            return input(PROMPT)
        stderr.write(PROMPT)  # the prompt is for the person, not for a piped stdout
        stderr.flush()
        line = stdin.readline()
        return line if line else None
    except EOFError:
        return None


def _readline(commands: Commands, history: Path, names: Callable[[], list[str]]) -> None:
    try:
        import readline
    except ImportError:  # a Python without it: plain lines, no editing
        return
    for line in load_history(history):
        readline.add_history(line)
    matches: list[str] = []

    def complete(text: str, state: int) -> str | None:
        if state == 0:
            before = readline.get_line_buffer()[: readline.get_endidx()]
            found = commands.complete(before, names())
            matches[:] = [c.text for c in found]  # readline replaces the word, as we do
        if state >= len(matches):
            return None
        return matches[state] if matches[state].endswith(":") else matches[state] + " "

    readline.set_completer_delims(" \t")
    readline.set_completer(complete)
    readline.parse_and_bind("tab: complete")
