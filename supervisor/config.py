"""The stack file: ``supervise.toml`` decoded strictly into resolved, typed Structs.

Loading goes in three steps:

1. ``tomllib`` parses the text (a syntax error names its line and column);
2. every string value anywhere in the tree is interpolated (``${VAR}``, ``.env``: see
   ``supervisor.interpolate``);
3. each table is decoded into its Struct field by field.  A field annotated with
   ``Field(parse, show)`` is read by ``parse`` (sizes, durations, volumes...) and printed back by
   ``show``; any other field is read by ``msgspec.convert`` on its type.  Unknown keys are
   refused.  Rules across fields live in each Struct's ``__post_init__``, so a Stack decoded
   from JSON is checked the same way.

So adding a key is adding one annotated field.  Every error is a ``ConfigError`` of one line:
``<file>: <key path>: <what>[, expected X, got Y]``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec

from logging_bus.specs import Filter, Output
from supervisor.config_keys import (
    HOSTNAME_RE,
    IMAGE_RE,
    NAME_RULE,
    PROJECT_RE,
    PROJECT_RULE,
    USER_RE,
    Ctx,
    Field,
    Invalid,
    TmpfsSpec,
    Ulimit,
    VolumesFrom,
    VolumeSpec,
    as_table,
    decode_table,
    each,
    key_path,
    parse_tmpfs,
    parse_volume,
    read_bool,
    read_caps,
    read_command,
    read_cpus,
    read_env_file_key,
    read_environment,
    read_labels,
    read_mem_limit,
    read_memswap,
    read_pids_limit,
    read_positive_size,
    read_project,
    read_rootfs,
    read_ulimits,
    read_volume,
    read_volumes_from,
    read_working_dir,
    show_memswap,
    show_tmpfs,
    show_ulimit,
    show_volume,
    show_volumes_from,
    string_field,
    table_field,
    via,
)
from supervisor.config_lifecycle import (
    Backoff,
    Condition,
    DependsOn,
    Healthcheck,
    RestartPolicy,
    parse_restart,
    read_depends_on,
    read_healthcheck,
    show_depends_on,
    show_healthcheck,
    show_restart,
)
from supervisor.config_logs import FILTERS_FIELD, OUTPUTS_FIELD
from supervisor.config_net import (
    ExposedPort,
    LinkSpec,
    PortSpec,
    StackNetwork,
    read_expose,
    read_extra_hosts,
    read_link,
    read_network_mode,
    read_port,
    show_expose,
    show_link,
    show_port,
)
from supervisor.errors import ConfigError, UsageError
from supervisor.graph import find_cycle
from supervisor.interpolate import InterpolationError, interpolate, read_env_file
from supervisor.paths import NAME_RE
from supervisor.toml_writer import Inline, dumps
from supervisor.units import (
    format_duration,
    format_size,
    parse_duration,
    parse_signal,
    parse_size,
    show,
    signal_name,
)

__all__ = [
    "Backoff",
    "Condition",
    "Container",
    "DependsOn",
    "Healthcheck",
    "RestartPolicy",
    "Stack",
    "StackSettings",
    "TmpfsSpec",
    "Ulimit",
    "VolumeSpec",
    "VolumesFrom",
    "container_from_mapping",
    "load_stack",
    "parse_duration",
    "parse_restart",
    "parse_signal",
    "parse_size",
    "parse_tmpfs",
    "parse_volume",
    "render",
]


# -- the stack ------------------------------------------------------------------------------

_BOOL = Field(read_bool)


def read_log_file(value: object, ctx: Ctx) -> str:
    """An absolute path in the container; a glob (`*.log`) only in its last part, since the
    tailer watches one directory."""
    path = read_working_dir(value, ctx)
    directory = os.path.dirname(path)
    if any(c in directory for c in "*?["):
        raise Invalid(f"expected a glob only in the file name, such as "
                      f"'/var/log/redis/*.log', got {show(path)}")
    return path


class LogSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-container logging: `files` inside its volumes, tailed into the log bus with
    `file:/path` as their source (their directories must be volumes, own or inherited), and
    the `filters` its lines pass on their way to the outputs (before `[stack.logs] filters`)."""

    files: Annotated[list[str], Field(each(read_log_file))] = []
    filters: Annotated[list[Filter], FILTERS_FIELD] = []


class Container(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[containers.NAME]`` table, resolved: paths absolute, units in bytes and seconds."""

    name: str
    image: Annotated[
        str | None, string_field(IMAGE_RE, "an image such as 'alpine:3.19' or 'host'")
    ] = None
    rootfs: Annotated[str | None, Field(read_rootfs)] = None
    # A build context folder: built before `up`, tagged `image` (default `<project>_<name>`).
    build: Annotated[str | None, Field(read_rootfs)] = None
    command: Annotated[list[str] | None, Field(read_command)] = None
    entrypoint: Annotated[list[str] | None, Field(read_command)] = None
    hostname: Annotated[str | None, string_field(HOSTNAME_RE, "a host name such as 'web-1'")] = None
    environment: Annotated[dict[str, str], Field(read_environment)] = {}
    env_file: Annotated[list[str], Field(each(read_env_file_key))] = []
    working_dir: Annotated[str | None, Field(read_working_dir)] = None
    user: Annotated[str | None, string_field(USER_RE, "'uid[:gid]' or 'name[:group]'")] = None
    volumes: Annotated[
        list[VolumeSpec], Field(each(read_volume, str | dict[str, object]), show_volume)
    ] = []
    volumes_from: Annotated[
        list[VolumesFrom], Field(each(read_volumes_from), show_volumes_from)
    ] = []
    stop_signal: Annotated[int, Field(via(parse_signal), signal_name)] = 15
    stop_grace_period: Annotated[float, Field(via(parse_duration), format_duration)] = 10.0
    mem_limit: Annotated[int | None, Field(read_mem_limit, format_size)] = None
    memswap_limit: Annotated[int | None, Field(read_memswap, show_memswap)] = None
    cpus: Annotated[float | None, Field(read_cpus)] = None
    pids_limit: Annotated[int | None, Field(read_pids_limit)] = None
    tty: Annotated[bool, _BOOL] = False
    stdin_open: Annotated[bool, _BOOL] = False
    init: Annotated[bool, _BOOL] = False
    cap_add: Annotated[list[str], Field(read_caps)] = []
    cap_drop: Annotated[list[str], Field(read_caps)] = []
    read_only: Annotated[bool, _BOOL] = False
    tmpfs: Annotated[list[TmpfsSpec], Field(each(via(parse_tmpfs)), show_tmpfs)] = []
    ulimits: Annotated[dict[str, Ulimit], Field(read_ulimits, show_ulimit)] = {}
    shm_size: Annotated[int | None, Field(read_positive_size, format_size)] = None
    restart: Annotated[RestartPolicy, Field(via(parse_restart), show_restart)] = RestartPolicy()
    restart_backoff: Annotated[Backoff, table_field(Backoff)] = Backoff()
    depends_on: Annotated[dict[str, DependsOn], Field(read_depends_on, show_depends_on)] = {}
    healthcheck: Annotated[Healthcheck | None, Field(read_healthcheck, show_healthcheck)] = None
    logs: Annotated[LogSettings, table_field(LogSettings)] = LogSettings()
    network_mode: Annotated[str, Field(read_network_mode)] = "bridge"
    links: Annotated[list[LinkSpec], Field(each(read_link), show_link)] = []
    ports: Annotated[list[PortSpec], Field(each(read_port, str | int), show_port)] = []
    expose: Annotated[list[ExposedPort], Field(each(read_expose, str | int), show_expose)] = []
    extra_hosts: Annotated[dict[str, str], Field(read_extra_hosts)] = {}
    labels: Annotated[dict[str, str], Field(read_labels)] = {}

    def __post_init__(self) -> None:
        if not NAME_RE.fullmatch(self.name):
            raise Invalid(f"expected a container name of {NAME_RULE}, got {show(self.name)}")
        if self.build is not None:
            if self.rootfs is not None or self.image == "host":
                raise Invalid("'build' makes an image: expected no 'rootfs' and an 'image' "
                              "other than 'host' (its tag)", ("build",))
        elif (self.image is None) == (self.rootfs is None):
            got = "neither" if self.image is None else "both"
            raise Invalid(f"expected exactly one of 'image' or 'rootfs', got {got}")
        if self.memswap_limit is not None and self.memswap_limit != -1:
            if self.mem_limit is None:
                raise Invalid("needs mem_limit to be set as well", ("memswap_limit",))
            if self.memswap_limit < self.mem_limit:
                raise Invalid(
                    f"expected -1 or a size of at least mem_limit ({format_size(self.mem_limit)})"
                    f", got {show(format_size(self.memswap_limit))}",
                    ("memswap_limit",),
                )
        for i, source in enumerate(self.volumes_from):
            if source.container == self.name:
                raise Invalid("a container cannot take volumes from itself", ("volumes_from", i))
        if self.name in self.depends_on:
            raise Invalid("a container cannot depend on itself", ("depends_on", self.name))
        if self.network_mode == f"container:{self.name}":
            raise Invalid("a container cannot share its own network", ("network_mode",))
        if self.network_mode != "bridge":
            if self.ports:  # Docker: "conflicting options: port publishing and the network mode"
                raise Invalid(f"publishing ports needs network_mode 'bridge', got "
                              f"{self.network_mode!r}", ("ports",))
            if self.links:
                raise Invalid(f"links need network_mode 'bridge', got {self.network_mode!r}",
                              ("links",))
        aliases: set[str] = set()
        for i, link in enumerate(self.links):
            if link.container == self.name:
                raise Invalid("a container cannot link to itself", ("links", i))
            if link.alias in aliases:
                raise Invalid(f"duplicate link alias {link.alias!r}", ("links", i))
            aliases.add(link.alias)
        published: set[tuple[str, int, str]] = set()
        for i, p in enumerate(self.ports):
            bound = (p.host_ip, p.host_port, p.protocol)
            if p.host_port and bound in published:
                raise Invalid(f"host port {p.host_port}/{p.protocol} is published twice",
                              ("ports", i))
            published.add(bound)
        mounts: set[str] = set()
        targets = [("volumes", i, v.target) for i, v in enumerate(self.volumes)]
        targets += [("tmpfs", i, t.target) for i, t in enumerate(self.tmpfs)]
        for key, i, target in targets:
            if target in mounts:
                raise Invalid(f"duplicate mount point {target!r}", (key, i))
            mounts.add(target)

    def dependencies(self) -> dict[str, Condition]:
        """The containers this one needs before it starts, each with the condition to wait for.

        ``depends_on`` as written, then ``volumes_from`` sources as ``service_started``: Compose
        counts volumes_from as a dependency too (the volumes must exist first).  The one place
        that says what an edge is, for the cycle check here and the start order in ``plan``;
        ``links`` and ``network_mode = "container:..."`` are edges too.
        """
        deps: dict[str, Condition] = {name: d.condition for name, d in self.depends_on.items()}
        for source in self.volumes_from:
            deps.setdefault(source.container, "service_started")
        for link in self.links:  # as Docker's links: the target starts first
            deps.setdefault(link.container, "service_started")
        if self.network_mode.startswith("container:"):
            deps.setdefault(self.network_mode.partition(":")[2], "service_started")
        return deps


def read_fsync(value: object, ctx: Ctx) -> str:
    if value not in ("1s", "always", "never"):
        raise Invalid(f"expected '1s', 'always' or 'never', got {show(value)}")
    return str(value)


class StackLogs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[stack.logs]``: the log store's durability and retention (conventions.md, Logs)."""

    fsync: Annotated[str, Field(read_fsync)] = "1s"
    max_size: Annotated[int | None, Field(read_positive_size, format_size)] = None
    max_age: Annotated[float | None, Field(via(parse_duration), format_duration)] = None
    filters: Annotated[list[Filter], FILTERS_FIELD] = []  # after each container's own
    outputs: Annotated[dict[str, Output], OUTPUTS_FIELD] = {}


class StackSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[stack]`` table."""

    name: Annotated[str | None, Field(read_project)] = None
    logs: Annotated[StackLogs, table_field(StackLogs)] = StackLogs()
    network: Annotated[StackNetwork, table_field(StackNetwork)] = StackNetwork()


class Stack(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    project: str
    path: str
    stack: StackSettings = StackSettings()
    containers: dict[str, Container] = {}

    def __post_init__(self) -> None:
        for name, container in self.containers.items():
            if container.name != name:
                raise Invalid(f"expected the name {name!r}, got {container.name!r}",
                              ("containers", name, "name"))  # fmt: skip
            for i, source in enumerate(container.volumes_from):
                if source.container not in self.containers:
                    raise Invalid(f"no container named {source.container!r} in this stack",
                                  ("containers", name, "volumes_from", i))  # fmt: skip
            for i, link in enumerate(container.links):
                if link.container not in self.containers:
                    raise Invalid(f"no container named {link.container!r} in this stack",
                                  ("containers", name, "links", i))  # fmt: skip
            mode = container.network_mode
            if mode.startswith("container:") and mode[10:] not in self.containers:
                raise Invalid(f"no container named {mode[10:]!r} in this stack",
                              ("containers", name, "network_mode"))  # fmt: skip
            for dep, spec in container.depends_on.items():
                where = ("containers", name, "depends_on", dep)
                if dep not in self.containers:
                    raise Invalid(f"no container named {dep!r} in this stack", where)
                check = self.containers[dep].healthcheck
                if spec.condition == "service_healthy" and not (check and check.enabled):
                    raise Invalid(f"condition 'service_healthy' needs a healthcheck on {dep!r}",
                                  where)  # fmt: skip
        for name, output in self.stack.logs.outputs.items():
            for i, target in enumerate(output.containers):
                if target not in self.containers:
                    raise Invalid(f"no container named {target!r} in this stack",
                                  ("stack", "logs", "outputs", name, "containers", i))
        cycle = find_cycle({n: c.dependencies() for n, c in self.containers.items()})
        if cycle:
            raise Invalid("dependency cycle: " + " -> ".join(cycle), ("containers",))


# -- decoding -------------------------------------------------------------------------------


def _container(name: str, raw: object, ctx: Ctx) -> Container:
    kwargs = decode_table(Container, raw, ctx, "name")
    environment: dict[str, str] = {}
    for path in kwargs.get("env_file", []):  # env_file values first, environment wins
        environment.update(ctx.env_files[path])
    kwargs["environment"] = environment | kwargs.get("environment", {})
    return Container(name=name, **kwargs)


def container_from_mapping(
    name: str,
    raw: dict[str, object],
    *,
    where: str,
    base: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Container:
    """A container from keys named as in the stack file (``supervise run`` builds them).

    Errors read ``<where>: <what>`` or ``<where>: <key>: <what>``.  Relative paths are resolved
    against ``base`` (default: the current folder); a bare environment ``KEY`` and ``~`` take
    their values from ``environ`` (default: os.environ).  ``volumes_from`` is not checked
    against a stack here.
    """
    env = os.environ if environ is None else environ
    ctx = Ctx(base=(base or Path.cwd()).absolute(), shown_base="", env=env)
    try:
        return _container(name, raw, ctx)
    except Invalid as exc:
        place = f"{where}: {key_path(exc.path)}" if exc.path else where
        raise ConfigError(f"{place}: {exc.message}") from exc


def project_from_folder(folder: str) -> str:
    """Compose's normalisation: lower-cased, characters other than [a-z0-9_-] dropped."""
    return "".join(re.findall(r"[a-z0-9_-]", folder.lower())).lstrip("_-")


def _interpolate_tree(node: object, env: Mapping[str, str], path: tuple[str | int, ...]) -> Any:
    if isinstance(node, str):
        try:
            return interpolate(node, env)
        except InterpolationError as exc:
            raise Invalid(str(exc), path) from exc
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env, (*path, k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(v, env, (*path, i)) for i, v in enumerate(node)]
    return node


def read_toml(path: Path, shown: str) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{shown}: no such file") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{shown}: is a folder, expected a stack file") from exc
    except OSError as exc:
        raise ConfigError(f"{shown}: {(exc.strerror or str(exc)).lower()}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{shown}: not UTF-8 text") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.fullmatch(r"(.*) \(at (?:line (\d+), column (\d+)|(end of document))\)", str(exc))
        if not m:
            raise ConfigError(f"{shown}: {exc}") from exc
        where = f"line {m[2]}, column {m[3]}" if m[2] else "end of file"
        raise ConfigError(f"{shown}: {where}: {m[1]}") from exc


def load_stack(path: Path, environ: Mapping[str, str], project: str | None = None) -> Stack:
    """Read, interpolate, decode and check a stack file.

    The project is ``project`` (``-p``), else ``$SUPERVISE_PROJECT``, else ``[stack] name``,
    else the file's folder name made valid as Compose does.
    """
    shown = str(path)
    tree = read_toml(path, shown)
    absolute = os.path.abspath(path)
    folder = Path(absolute).parent
    ctx = Ctx(base=folder, shown_base=os.path.dirname(shown), env=environ)
    dotenv = folder / ".env"
    if dotenv.is_file():
        try:
            env_values = read_env_file(dotenv, os.path.join(ctx.shown_base, ".env"), environ)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        ctx.env = {**env_values, **environ}  # the environment wins over .env, as Compose
    try:
        tree = _interpolate_tree(tree, ctx.env, ())
        for key in tree:
            if key not in ("stack", "containers"):
                raise Invalid("unknown key, expected [stack] or [containers.NAME]", (key,))
        try:
            settings = StackSettings(**decode_table(StackSettings, tree.get("stack", {}), ctx))
        except Invalid as exc:
            raise exc.under("stack") from exc
        raw_containers = tree.get("containers", {})
        if not isinstance(raw_containers, dict):
            raise Invalid(f"expected a table, got {show(raw_containers)}", ("containers",))
        if not raw_containers:
            raise Invalid("expected at least one [containers.NAME] table, got none")
        containers: dict[str, Container] = {}
        for name, raw in raw_containers.items():
            try:
                containers[name] = _container(name, raw, ctx)
            except Invalid as exc:
                raise exc.under("containers", name) from exc
        chosen = _choose_project(project, environ, settings, folder, shown)
        for name, c in containers.items():  # Compose's default tag for what it builds
            if c.build is not None and c.image is None:
                containers[name] = msgspec.structs.replace(c, image=f"{chosen}_{name.lower()}")
        return Stack(project=chosen, path=absolute, stack=settings, containers=containers)
    except Invalid as exc:
        place = f"{shown}: {key_path(exc.path)}" if exc.path else shown
        raise ConfigError(f"{place}: {exc.message}") from exc


def _choose_project(
    project: str | None, environ: Mapping[str, str], settings: StackSettings, folder: Path,
    shown: str,
) -> str:  # fmt: skip
    for name, source in ((project, "-p/--project"), (environ.get("SUPERVISE_PROJECT"),
                                                     "SUPERVISE_PROJECT")):  # fmt: skip
        if name:
            if not PROJECT_RE.fullmatch(name):
                raise UsageError(f"{source}: expected a project name of {PROJECT_RULE}, "
                                 f"got {show(name)}")  # fmt: skip
            return name
    if settings.name:
        return settings.name
    derived = project_from_folder(folder.name)
    if not derived:
        raise ConfigError(f"{shown}: cannot name the project after the folder {folder.name!r}"
                          ", set [stack] name or use -p")  # fmt: skip
    return derived


# -- printing -------------------------------------------------------------------------------


def _escape_dollars(node: object) -> object:
    if isinstance(node, str):
        return node.replace("$", "$$")
    if isinstance(node, Inline):
        return Inline({k: _escape_dollars(v) for k, v in node.items()})
    if isinstance(node, dict):
        return {k: _escape_dollars(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_escape_dollars(v) for v in node]
    return node


def render(stack: Stack, fmt: str) -> str:
    """The resolved stack, every default filled in, as TOML or JSON.

    The TOML is itself a stack file that loads back to the same Stack (so ``$`` is written
    ``$$``); the JSON is the Stack Struct, ``msgspec.json.decode(text, type=Stack)``.
    """
    if fmt == "json":
        return msgspec.json.format(msgspec.json.encode(stack), indent=2).decode() + "\n"
    if fmt != "toml":
        raise ValueError(f"expected a format 'toml' or 'json', got {show(fmt)}")
    doc: dict[str, object] = {
        "stack": {**as_table(stack.stack), "name": stack.project},
        "containers": {n: as_table(c, "name") for n, c in stack.containers.items()},
    }
    header = f"# The resolved stack of {stack.path}, project {stack.project!r}.\n\n"
    return header + dumps(_escape_dollars(doc))  # type: ignore[arg-type]
