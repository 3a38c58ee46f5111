"""Wire and state formats (msgspec Structs): container records, volume records, API bodies.

Records are written as JSON under the project's state directory and survive supervisor
restarts (conventions.md, lifecycle); the control API returns the same shapes.
"""

from __future__ import annotations

from typing import Literal

import msgspec

ContainerStatus = Literal["created", "running", "exited"]


class MountRecord(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One resolved mount: what `volumes_from` copies and `volume rm` checks."""

    type: Literal["bind", "volume", "tmpfs"]
    source: str  # host path (bind, volume) or "" (tmpfs)
    target: str
    read_only: bool = False
    name: str | None = None  # the volume's short name, for type "volume"
    anonymous: bool = False


class ContainerRecord(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the state directory knows of one container, across supervisor restarts."""

    name: str
    project: str
    created: str  # RFC 3339
    config: bytes  # the container's config Struct as JSON (decoded by supervisor.config)
    mounts: list[MountRecord] = []
    status: ContainerStatus = "created"
    pid: int = 0
    cgroup: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    error: str = ""
    stopped_by_user: bool = False


class VolumeRecord(msgspec.Struct, frozen=True, kw_only=True, rename="pascal"):
    """Docker's `volume inspect` shape."""

    name: str
    driver: str = "local"
    mountpoint: str
    created_at: str
    labels: dict[str, str] = {}
    scope: str = "local"
