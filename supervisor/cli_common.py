"""What every CLI verb that talks to a supervisor needs first: which project, and a client.

Light on purpose (standard library, `paths`, `errors`, the stdlib `LightClient`): `supervise
logs NAME > file` and the other verbs pay only this before their first request.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from supervisor.errors import NoSupervisor, SupervisorError, UsageError
from supervisor.lightclient import LightClient
from supervisor.paths import PROJECT_NAME_RE, ProjectPaths, run_root


def running_projects() -> list[str]:
    """Projects whose supervisor is alive (pid file of a live process, socket present)."""
    root = run_root(os.environ)
    found = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            try:
                pid = int((d / "pid").read_text().strip())
            except (OSError, ValueError):
                continue
            if (d / "api.sock").exists() and Path(f"/proc/{pid}").exists():
                found.append(d.name)
    return found


def find_project(args: argparse.Namespace, *, required: bool = True) -> ProjectPaths | None:
    """-p, then SUPERVISE_PROJECT, then the stack file here, then the only one running."""
    project = args.project or os.environ.get("SUPERVISE_PROJECT")
    if project is None:
        for name in ("supervise.toml", "stack.toml"):
            if Path(name).exists():
                from supervisor import config

                project = config.load_stack(Path(name), os.environ).project
                break
    if project is None:
        running = running_projects()
        if len(running) == 1:
            project = running[0]
        elif not required:
            return None
        elif running:
            raise UsageError("several supervisors are running (" + ", ".join(running)
                             + "): choose one with -p PROJECT")
        else:
            raise NoSupervisor("no supervisor is running: start one with `supervise up` "
                               "(or `supervise run -d ...`)")
    if not PROJECT_NAME_RE.fullmatch(project):
        raise UsageError(f"-p/--project: expected a name of lower-case letters, digits, '-' "
                         f"and '_', such as 'web_1', got {project!r}")
    return ProjectPaths.for_project(project, os.environ)


def client_for(paths: ProjectPaths, timeout: float | None = 60) -> LightClient:
    sock = paths.run / "api.sock"
    if not sock.exists():
        raise NoSupervisor(f"no supervisor is running for project {paths.project}: start it "
                           "with `supervise up` (or `supervise run -d ...`)")
    return LightClient(str(sock), timeout=timeout, project=paths.project)


def connect(args: argparse.Namespace, timeout: float | None = 60) -> LightClient:
    paths = find_project(args)
    assert paths is not None
    return client_for(paths, timeout)


def supervisor_alive(paths: ProjectPaths) -> bool:
    """Whether a supervisor holds the project's lock, answering or not."""
    import fcntl

    try:
        fd = os.open(paths.run / "lock", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def reachable(paths: ProjectPaths, *, strict: bool = True) -> bool:
    """A supervisor runs the project.  One that holds the lock but does not answer is an
    error (unless not `strict`: while one starts), never a reason to act on its containers
    behind its back."""
    if not supervisor_alive(paths):
        return False
    try:
        with LightClient(str(paths.run / "api.sock"), timeout=10) as client:
            client.get("/_ping")
    except SupervisorError as e:
        if not strict:
            return False
        raise SupervisorError(f"the supervisor of project {paths.project} runs but does not "
                              f"answer: {e}") from e
    return True


def when(text: str, flag: str) -> float:
    """Unix seconds, RFC 3339, or a duration back from now (`10m`), as docker's flags."""
    from supervisor.units import parse_duration

    with contextlib.suppress(ValueError):
        return float(text)
    with contextlib.suppress(ValueError):
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.timestamp()
    try:
        return time.time() - parse_duration(text)
    except ValueError:
        raise UsageError(f"{flag}: expected a time such as '10m', '2026-12-04T10:00:00Z' or "
                         f"Unix seconds, got {text!r}") from None
