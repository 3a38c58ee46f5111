"""`supervise shell`: a live view of the stack with a command line (full screen), or the same
commands as a line-oriented REPL (`--plain`, or when not on a terminal).

    __init__   picks the mode; prompt_toolkit is imported only for the full screen
    commands   the command language (the CLI's parser), completion, history
    model      what the shell knows (pure); fmt: text helpers
    feed       the API's streams into the model, reconnecting (asyncio)
    runner     a verb as a child process, into the output pane
    view, app  the full screen (prompt_toolkit); keys: its key bindings
    plain      the REPL
"""

from __future__ import annotations

import argparse
import os
import sys


def main(args: argparse.Namespace) -> int:
    from supervisor.cli_common import find_project
    from supervisor.tui.commands import Commands, history_path

    paths = find_project(args)
    assert paths is not None
    commands = Commands(paths.project)
    history = history_path(paths.state)
    socket = str(paths.run / "api.sock")
    plain = (args.plain or not sys.stdin.isatty() or not sys.stdout.isatty()
             or os.environ.get("TERM", "") in ("dumb", "unknown"))
    if plain:
        from supervisor.tui.plain import repl

        return repl(commands, history, lambda: _names(socket))

    from supervisor.client import AsyncClient
    from supervisor.tui.app import run
    from supervisor.tui.model import Model

    return run(Model(paths.project),
               lambda: AsyncClient(socket, timeout=5, project=paths.project), history)


def _names(socket: str) -> list[str]:
    """Container names for completion in the REPL (none when nothing answers)."""
    from supervisor.client import Client
    from supervisor.errors import SupervisorError

    try:
        with Client(socket, timeout=2) as client:
            return [row["name"] for row in client.get("/containers/json", all=1)]
    except SupervisorError:
        return []
