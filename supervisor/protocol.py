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
    config: msgspec.Raw  # the container's config Struct, JSON kept as it is (no base64)
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


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One state change of a container (Docker's event, flattened).

    action: create, start, health_status, die, oom, restart (scheduled), stop, kill, pause,
    unpause, destroy, exec_start, exec_die, leftover (cleaned after a crash), update.
    """

    seq: int
    time: float  # Unix seconds
    action: str
    container: str
    attributes: dict[str, str] = {}


class HealthResult(msgspec.Struct, frozen=True, kw_only=True):
    start: float
    end: float
    exit_code: int | None  # None: timed out
    output: str


class HealthView(msgspec.Struct, frozen=True, kw_only=True):
    status: str  # starting | healthy | unhealthy
    failing_streak: int
    log: list[HealthResult] = []


class ContainerState(msgspec.Struct, frozen=True, kw_only=True):
    """What `ps` and `inspect` show of a container right now."""

    status: str  # created | running | restarting | paused | exited | removing
    running: bool
    paused: bool
    restarting: bool
    oom_killed: bool
    pid: int
    exit_code: int | None
    error: str
    started_at: str | None
    finished_at: str | None
    restart_count: int
    next_restart_at: float | None  # Unix seconds while crash-looping
    stopped_by_user: bool
    health: HealthView | None = None


class ContainerSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A `ps` row."""

    name: str
    image: str
    command: str
    created: str
    state: ContainerState
    status: str  # Docker's human text: "Up 5 seconds (healthy)", "Exited (1) 3 seconds ago"
    ports: list[str] = []
    labels: dict[str, str] = {}


class ContainerInspect(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    project: str
    created: str
    image: str
    config: msgspec.Raw  # the container's config Struct as JSON
    state: ContainerState
    mounts: list[MountRecord]
    cgroup: str
    network: NetworkView | None = None


class NetworkView(msgspec.Struct, frozen=True, kw_only=True):
    """inspect's network part: the mode, and on the stack network its sticky address."""

    mode: str
    ip_address: str = ""
    gateway: str = ""
    mac_address: str = ""
    ports: list[str] = []  # as `supervise port`: "3000/tcp -> 0.0.0.0:8080"


class ExitStatus(msgspec.Struct, frozen=True, kw_only=True):
    """`wait`'s answer, as Docker's: StatusCode."""

    status_code: int = msgspec.field(name="StatusCode")
    oom_killed: bool = False


class ExecRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    cmd: list[str]
    env: list[str] = []
    user: str | None = None
    workdir: str | None = None
    tty: bool = False
    stdin: bool = False


class OutputFrame(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One NDJSON frame of a non-interactive exec or attach stream."""

    stream: str = ""  # stdout | stderr
    data: str = ""  # text, invalid UTF-8 replaced
    exit_code: int | None = None  # the last frame


class UpdateRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Live limit changes (`supervise update`): the stack file's units."""

    mem_limit: str | int | None = None
    memswap_limit: str | int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    restart: str | None = None


class StatsView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    read: float
    cpu_usage_ns: int
    cpu_percent: float
    memory_usage: int
    memory_limit: int | None
    pids: int
    nr_throttled: int


class ProcessRow(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    ppid: int
    user: str
    command: str


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """The API's error body, as the Docker Engine API's."""

    message: str
