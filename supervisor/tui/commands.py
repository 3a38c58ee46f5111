"""The shell's command language: the CLI's own parser, a few words of the shell's own,
completion, and the persistent history.  No prompt_toolkit and no I/O but the history file.

A line is a `supervise` command line without the `supervise` (a leading `supervise` is
allowed): it is parsed by `cli.build_parser()` itself, so the shell accepts exactly what the
CLI accepts and rejects the rest with the CLI's own one-line message.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import SupervisorError

BUILTINS = {
    "help": "help [VERB]: the shell's commands and keys, or one verb's flags",
    "follow": "follow [NAME|all]: the log pane follows one container, or all",
    "clear": "clear: close the output pane",
    "quit": "quit: leave the shell (also exit, Ctrl-D)",
    "exit": "exit: leave the shell",
}
HIDDEN = {"_serve", "shell"}
HISTORY_LIMIT = 1000

KEYS = """\
On the command line:  Enter run · Tab complete · Up/Down history · Ctrl-C stop the running
                      command (or clear the line) · Ctrl-D quit · F1 help
                      / as the first character: search the log pane
                      Esc or F2: to the view's keys (Esc also closes the output pane)
In the view:          Up/Down or j/k select · Enter follow it · a follow all · / search
                      n/N older/newer match · p or space pause/resume following
                      G newest · g oldest · r restart · s stop · S start (the selected one)
                      : or i or Esc or F2: back to the command line · q quit
Anywhere:             Ctrl-Up/Down select · PgUp/PgDn scroll the log (or output) pane"""


@dataclass(frozen=True)
class Builtin:
    name: str
    args: list[str]


@dataclass(frozen=True)
class Verb:
    """A CLI verb, parsed: run as `supervise -p PROJECT ARGV...`."""

    argv: list[str]
    name: str
    terminal: bool  # needs the real terminal (-t / -i): the full-screen view steps aside


@dataclass(frozen=True)
class Text:
    text: str  # what --help printed


@dataclass(frozen=True)
class Invalid:
    message: str  # one line


Parsed = Builtin | Verb | Text | Invalid


@dataclass(frozen=True)
class Candidate:
    text: str
    start: int  # where the word being completed starts, back from the cursor (<= 0)
    meta: str = ""


class Commands:
    """Parses and completes shell lines for one project."""

    def __init__(self, project: str) -> None:
        from supervisor.cli import build_parser

        self.project = project
        self.parser = build_parser()
        self.verbs: dict[str, argparse.ArgumentParser] = {}
        self.verb_help: dict[str, str] = {}
        for action in self.parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    if name not in HIDDEN:
                        self.verbs[name] = sub
                for pseudo in action._choices_actions:
                    self.verb_help[pseudo.dest] = pseudo.help or ""

    # -- parsing --------------------------------------------------------------------------

    def parse(self, line: str) -> Parsed | None:
        """None for an empty line or a comment."""
        text = line.strip()
        if not text or text.startswith("#"):
            return None
        try:
            words = shlex.split(text)
        except ValueError as e:
            return Invalid(f"shell: {str(e).lower()}")
        if words and words[0] == "supervise":
            words = words[1:]
        if not words:
            return None
        head = words[0]
        if head in BUILTINS:
            return Builtin(head, words[1:])
        if head == "shell":
            return Invalid("shell: already in the shell")
        if head.endswith(".toml"):  # `supervise stack.toml` is `supervise up stack.toml`
            words.insert(0, "up")
        elif head not in self.verbs and not head.startswith("-"):
            return Invalid(f"shell: {head}: unknown command; `help` lists them")
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                args = self.parser.parse_args(["-p", self.project, *words])
        except SupervisorError as e:
            return Invalid(str(e))
        except SystemExit:  # --help printed and "exited"
            return Text(out.getvalue())
        if getattr(args, "verb", None) in HIDDEN:
            return Invalid(f"shell: {args.verb}: unknown command; `help` lists them")
        if not getattr(args, "func", None):
            return Text(self.parser.format_help())
        terminal = bool(getattr(args, "tty", False) or getattr(args, "interactive", False))
        return Verb(words, args.verb, terminal)

    def help(self, args: list[str], *, keys: bool = True) -> str:
        if args and args[0] in self.verbs:
            return self.verbs[args[0]].format_help()
        if args and args[0] in BUILTINS:
            return BUILTINS[args[0]]
        width = max(len(v) for v in [*self.verbs, *BUILTINS])
        lines = ["Every supervise verb, with the same flags (`help VERB` shows them):"]
        lines += [f"  {v:<{width}}  {self.verb_help.get(v, '')}" for v in self.verbs]
        lines += ["The shell's own:"]
        lines += [f"  {b:<{width}}  {text.split(': ', 1)[-1]}" for b, text in BUILTINS.items()]
        if keys:
            lines += ["", KEYS]
        return "\n".join(lines)

    # -- completion -----------------------------------------------------------------------

    def complete(self, before: str, names: list[str]) -> list[Candidate]:
        """Candidates for the word under the cursor: verbs, flags, flag values, names."""
        ends = not before or before[-1].isspace()
        try:
            words = shlex.split(before)
        except ValueError:
            words = before.split()
        current = "" if ends or not words else words[-1]
        done = words if ends else words[:-1]
        if done and done[0] == "supervise":
            done = done[1:]
        start = -len(current)
        if not done:
            found = [Candidate(v, start, self.verb_help.get(v, "")) for v in self.verbs]
            found += [Candidate(b, start, BUILTINS[b].split(": ", 1)[-1]) for b in BUILTINS]
            return [c for c in found if c.text.startswith(current)]
        return [c for c in self._arguments(done, current, names)
                if c.text.startswith(current)]

    def _arguments(self, done: list[str], current: str, names: list[str]) -> list[Candidate]:
        start = -len(current)
        verb = done[0]
        if verb == "follow":
            return [Candidate(n, start) for n in [*names, "all"]] if len(done) == 1 else []
        if verb == "help":
            return [Candidate(v, start) for v in self.verbs] if len(done) == 1 else []
        sub = self.verbs.get(verb)
        if sub is None:
            return []
        rest = done[1:]
        if verb == "volume":
            inner = _subparsers(sub)
            if not rest:
                return [Candidate(v, start) for v in inner]
            sub, rest = inner.get(rest[0], sub), rest[1:]
        options = {s: a for a in sub._actions for s in a.option_strings}
        previous = options.get(rest[-1]) if rest else None
        if previous is not None and _takes_value(previous):
            return [Candidate(str(c), start) for c in previous.choices or []]
        if current.startswith("-"):
            return [Candidate(s, start, a.help or "") for a in sub._actions
                    for s in a.option_strings if a.help != argparse.SUPPRESS]
        positional = _positional_for(sub, rest, options)
        if positional is None:
            return []
        metavar = str(positional.metavar or positional.dest).upper()
        if metavar == "NAME" or metavar == "NAMES":
            return [Candidate(n, start) for n in names]
        if metavar in ("SRC", "DEST"):
            return [Candidate(n + ":", start) for n in names]
        return []


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0 and not isinstance(action, argparse._HelpAction)


def _positional_for(parser: argparse.ArgumentParser, words: list[str],
                    options: dict[str, argparse.Action]) -> argparse.Action | None:
    """The positional argument the next word fills, counting those already given."""
    positionals = [a for a in parser._actions if not a.option_strings]
    given = 0
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word.startswith("-") and word != "-":
            action = options.get(word.split("=", 1)[0])
            skip = action is not None and _takes_value(action) and "=" not in word
            continue
        given += 1
    for index, action in enumerate(positionals):
        if action.nargs in ("+", "*", argparse.REMAINDER):
            return action if action.nargs != argparse.REMAINDER or given <= index else None
        if given <= index:
            return action
    return None


# -- history --------------------------------------------------------------------------------

def history_path(state: Path, environ: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    """The project's state folder when it exists (each project its own history), else
    $XDG_STATE_HOME/supervise/history (~/.local/state/supervise/history)."""
    if state.is_dir() and os.access(state, os.W_OK):
        return state / "shell_history"
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "supervise" / "history"


def load_history(path: Path) -> list[str]:
    """Oldest first; a file grown past HISTORY_LIMIT lines is cut back to it."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line]
    except OSError:
        return []
    if len(lines) > HISTORY_LIMIT:
        lines = lines[-HISTORY_LIMIT:]
        with contextlib.suppress(OSError):
            path.write_text("".join(line + "\n" for line in lines))
    return lines


def append_history(path: Path, line: str) -> None:
    """Best effort: a shell on a read-only home still runs, it only forgets."""
    line = line.strip()
    if not line or "\n" in line:
        return
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(line + "\n")
