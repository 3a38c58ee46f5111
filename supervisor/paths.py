"""Where a project keeps its state and runtime files (conventions.md, "Projects...").

State (volumes, container records, the log store, leases, offsets) lives under
``$SUPERVISE_STATE_DIR`` (default ``/var/lib/supervise``); runtime files (api.sock, pid file,
lock) under ``$SUPERVISE_RUN_DIR`` (default ``/run/supervise``), each in a folder per project.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")  # containers (Docker's rule)
PROJECT_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")  # projects (Compose's): never a "."


def state_root(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get("SUPERVISE_STATE_DIR") or "/var/lib/supervise")


def run_root(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get("SUPERVISE_RUN_DIR") or "/run/supervise")


@dataclass(frozen=True)
class ProjectPaths:
    """Every place one project owns, derived from its name."""

    project: str
    state: Path
    run: Path

    @classmethod
    def for_project(cls, project: str, environ: Mapping[str, str] = os.environ) -> ProjectPaths:
        return cls(project, state_root(environ) / project, run_root(environ) / project)

    def ensure_private(self) -> None:
        """The project's state folder, 0700: writable layers and volumes hold what containers
        made — setuid-root files among them — which no other user of this host may reach
        (Docker keeps /var/lib/docker 0710 for the same reason)."""
        self.state.mkdir(parents=True, exist_ok=True)
        if self.state.stat().st_mode & 0o077:
            os.chmod(self.state, 0o700)

    @property
    def containers(self) -> Path:
        return self.state / "containers"

    def container(self, name: str) -> Path:
        return self.containers / name

    @property
    def volumes(self) -> Path:
        return self.state / "volumes"

    @property
    def logs(self) -> Path:
        """The log store (logging_bus)."""
        return self.state / "logs"

    @property
    def layers(self) -> Path:
        """Read-only lower layers made by supervise itself (the `host` image's base)."""
        return self.state / "layers"

    def kernel_name(self, container: str) -> str:
        """The name of the container's kernel objects (cgroups, namespaces).

        `supervise-<project>.<container>`: a project name has no ".", so the first "." ends
        it, and no project's names are a prefix of another's (with "-", project `web` and
        `web-api` would mix, and `a`+`b-c` would equal `a-b`+`c`)."""
        return f"supervise-{self.project}.{container}"

    @property
    def kernel_prefix(self) -> str:
        """What every kernel object of this project, and no other, starts with."""
        return self.kernel_name("")
