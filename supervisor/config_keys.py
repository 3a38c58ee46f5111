"""How each key of the stack file is read: the readers that ``supervisor.config`` names in its
Structs' ``Field`` annotations, and the small Structs below a container.

A reader takes the raw (interpolated) TOML value and a ``Ctx`` and returns the resolved value,
or raises ``Invalid`` with the ``<what>[, expected X, got Y]`` of a message and the key path
below the key being read; ``supervisor.config`` puts the file and the key in front.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import shlex
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from supervisor.errors import ConfigError
from supervisor.interpolate import read_env_file
from supervisor.paths import NAME_RE
from supervisor.toml_writer import Inline
from supervisor.units import (
    ULIMITS,
    format_size,
    parse_capability,
    parse_size,
    show,
)

PROJECT_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")
NAME_RULE = "letters, digits, '_', '.' and '-', starting with a letter or digit"
PROJECT_RULE = "lower-case letters, digits, '_' and '-', starting with a letter or digit"


class Invalid(ValueError):
    """A bad value at ``path`` (key names and list indexes) below the table being decoded."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def under(self, *prefix: str | int) -> Invalid:
        return Invalid(self.message, (*prefix, *self.path))


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_path(path: tuple[str | int, ...]) -> str:
    """``("containers", "web", "volumes", 0) -> "containers.web.volumes[0]"``, TOML-quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if _BARE_KEY.fullmatch(part) else msgspec.json.encode(part).decode()
            out += f".{key}" if out else key
    return out


# -- resolved values below a container -----------------------------------------------------


class VolumeSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    type: Literal["bind", "volume", "anonymous"]
    source: str | None  # bind: an absolute host path; volume: its name; anonymous: None
    target: str
    read_only: bool = False


class VolumesFrom(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    container: str
    read_only: bool = False


class TmpfsSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    target: str
    size: int | None = None
    mode: int | None = None


class Ulimit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    soft: int
    hard: int

    def __post_init__(self) -> None:
        if self.soft < -1 or self.hard < -1:
            raise Invalid(f"expected limits of -1 (unlimited) or more, got {self.soft}:{self.hard}")
        if (self.hard != -1 and self.soft > self.hard) or (self.soft == -1 and self.hard != -1):
            raise Invalid(f"expected soft <= hard, got soft {self.soft} above hard {self.hard}")


# -- reading values -------------------------------------------------------------------------


@dataclass
class Ctx:
    base: Path  # absolute folder that relative paths are resolved against
    shown_base: str  # the same folder as the user spelled it, for naming files in messages
    env: Mapping[str, str]  # the environment and .env: bare environment keys, env_file ${VAR}
    env_files: dict[str, dict[str, str]] = field(default_factory=dict)  # read once per load


@dataclass(frozen=True)
class Field:
    """How a key is read from the file and printed back by ``supervise config``."""

    parse: Callable[[object, Ctx], Any]
    show: Callable[[Any], object] | None = None


_PHRASES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean",
            "array": "a list", "object": "a table"}  # fmt: skip
_AT = re.compile(r"(.*?)(?: - at `\$(.*)`)?", re.DOTALL)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _translate(exc: msgspec.ValidationError, value: object) -> Invalid:
    """A msgspec message (``Expected `int`, got `str` - at `$[0]```) in our grammar."""
    m = _AT.fullmatch(str(exc))
    assert m is not None  # the pattern matches any text
    text, where = m[1], m[2] or ""
    path: list[str | int] = []
    node = value
    for key, index in _STEP.findall(where):
        step: str | int = key or int(index)
        path.append(step)
        if isinstance(node, dict) and isinstance(step, str):
            node = node.get(step)
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
    if e := re.fullmatch(r"Expected `(.+?)`(.*?)(?:, got `.+`)?", text):
        types = [_PHRASES.get(t, t) for t in e[1].split(" | ") if t != "null"]
        return Invalid(f"expected {' or '.join(types)}{e[2]}, got {show(node)}", tuple(path))
    if e := re.fullmatch(r"Object contains unknown field `(.+)`", text):
        return Invalid("unknown key", (*path, e[1]))
    if e := re.fullmatch(r"Object missing required field `(.+)`", text):
        return Invalid(f"missing key {e[1]!r}", tuple(path))
    return Invalid(text[:1].lower() + text[1:], tuple(path))


def typed(value: object, tp: Any) -> Any:
    try:
        return msgspec.convert(value, tp, strict=True)
    except msgspec.ValidationError as exc:
        raise _translate(exc, value) from exc


@functools.cache
def struct_fields(cls: type[msgspec.Struct]) -> dict[str, tuple[Any, Field | None]]:
    """Each field of a Struct: its type, and its Field annotation if any."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out: dict[str, tuple[Any, Field | None]] = {}
    for name in cls.__struct_fields__:
        hint, meta = hints[name], None
        if typing.get_origin(hint) is Annotated:
            hint, *extras = typing.get_args(hint)
            meta = next((x for x in extras if isinstance(x, Field)), None)
        out[name] = (hint, meta)
    return out


def decode_table(cls: type[msgspec.Struct], raw: object, ctx: Ctx, *fixed: str) -> dict[str, Any]:
    """The keyword arguments of ``cls`` from a TOML table; ``fixed`` keys are not the user's.

    Used for a container and for the tables below it (``healthcheck``, ``restart_backoff``),
    so that every level refuses unknown keys with the same "did you mean" hint.
    """
    if not isinstance(raw, dict):
        raise Invalid(f"expected a table, got {show(raw)}")
    fields = {k: v for k, v in struct_fields(cls).items() if k not in fixed}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise Invalid(f"unknown key{hint}", (key,))
        tp, meta = fields[key]
        try:
            kwargs[key] = meta.parse(value, ctx) if meta else typed(value, tp)
        except Invalid as exc:
            raise exc.under(key) from exc
    return kwargs


def as_table(struct: msgspec.Struct, *skip: str) -> dict[str, object]:
    """A Struct as ``supervise config`` prints it: each field through its Field's ``show``."""
    table: dict[str, object] = {}
    for key, (_, meta) in struct_fields(type(struct)).items():
        value = getattr(struct, key)
        if key in skip or value is None:
            continue  # TOML has no null: an unset key is left out
        if meta and meta.show:
            if isinstance(value, list):
                value = [meta.show(v) for v in value]
            elif isinstance(value, dict):
                value = {k: meta.show(v) for k, v in value.items()}
            else:
                value = meta.show(value)
        table[key] = value
    return table


def table_field(cls: type[msgspec.Struct]) -> Field:
    """A key whose value is a table of ``cls``'s own annotated keys, printed back inline."""

    def read(value: object, ctx: Ctx) -> Any:
        return cls(**decode_table(cls, value, ctx))

    return Field(read, lambda struct: Inline(as_table(struct)))


def via(parse: Callable[[Any], Any]) -> Callable[[object, Ctx], Any]:
    """A parser of units.py (ValueError with the message tail) as a field parser."""

    def read(value: object, ctx: Ctx) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from exc

    return read


def each(read: Callable[[Any, Ctx], Any], tp: Any = str) -> Callable[[object, Ctx], list[Any]]:
    """A list whose items are read by ``read``; a single item is a list of one (as Compose)."""

    def read_list(value: object, ctx: Ctx) -> list[Any]:
        items = typed(value, list[tp] | tp)
        if not isinstance(items, list):
            return [_one(read, items, ctx, ())]
        return [_one(read, item, ctx, (i,)) for i, item in enumerate(items)]

    return read_list


def _one(read: Callable[[Any, Ctx], Any], item: object, ctx: Ctx, at: tuple[int, ...]) -> Any:
    try:
        return read(item, ctx)
    except Invalid as exc:
        raise exc.under(*at) from exc
    except ValueError as exc:
        raise Invalid(str(exc), at) from exc


def string_field(check: re.Pattern[str] | None = None, expected: str = "") -> Field:
    def read(value: object, ctx: Ctx) -> str:
        text: str = typed(value, str)
        if check is not None and not check.fullmatch(text):
            raise Invalid(f"expected {expected}, got {show(text)}")
        return text

    return Field(read)


def read_bool(value: object, ctx: Ctx) -> bool:
    # Strings too, so that `tty = "${TTY:-false}"` works as Compose's casting does.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise Invalid(f"expected a boolean, got {show(value)}")


def read_int(value: object, ctx: Ctx) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise Invalid(f"expected an integer, got {show(value)}")


def read_number(value: object, ctx: Ctx) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d*)?|\.\d+", value.strip()):
        return float(value)
    raise Invalid(f"expected a number, got {show(value)}")


def absolute(path: str, base: Path) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def read_command(value: object, ctx: Ctx) -> list[str]:
    command: str | list[str] = typed(value, list[str] | str)
    if isinstance(command, list):
        return command
    try:
        return shlex.split(command)  # as Compose splits a string command
    except ValueError as exc:
        what = str(exc)[:1].lower() + str(exc)[1:]
        raise Invalid(f"{what}, expected a command line such as "
                      f"'redis-server --port 7777', got {show(command)}") from exc  # fmt: skip


_ENV_KEY = re.compile(r"[^=\x00]+")


def read_environment(value: object, ctx: Ctx) -> dict[str, str]:
    env: dict[str, str] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if not _ENV_KEY.fullmatch(key):
                raise Invalid(f"expected a variable name without '=', got {show(key)}", (key,))
            if isinstance(item, bool):
                env[key] = "true" if item else "false"
            elif isinstance(item, str | int | float):
                env[key] = str(item)
            else:
                raise Invalid(f"expected a string, got {show(item)}", (key,))
        return env
    if not isinstance(value, list):
        raise Invalid(f"expected a table or a list of 'KEY=VALUE', got {show(value)}")
    for i, item in enumerate(typed(value, list[str])):
        key, eq, val = item.partition("=")
        if not _ENV_KEY.fullmatch(key):
            raise Invalid(f"expected 'KEY=VALUE' or 'KEY', got {show(item)}", (i,))
        if eq:
            env[key] = val
        elif key in ctx.env:  # a bare KEY takes its value from the environment, as Compose
            env[key] = ctx.env[key]
    return env


def read_labels(value: object, ctx: Ctx) -> dict[str, str]:
    """Compose's `labels`: a table, or a list of "key=value" (a bare key is an empty value)."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise Invalid(f"expected a string, got {show(item)}", (key,))
            out[key] = str(item)
        return out
    if not isinstance(value, list):
        raise Invalid(f"expected a table or a list of 'key=value', got {show(value)}")
    return {k: v for k, _, v in (item.partition("=") for item in typed(value, list[str]))}


def read_env_file_key(value: object, ctx: Ctx) -> str:
    assert isinstance(value, str)
    path = absolute(value, ctx.base)
    shown = os.path.normpath(os.path.join(ctx.shown_base, os.path.expanduser(value)))
    if not os.path.isfile(path):
        raise Invalid(f"no such file {shown!r}")
    if path not in ctx.env_files:
        try:
            ctx.env_files[path] = read_env_file(Path(path), shown, ctx.env)
        except OSError as exc:
            raise ConfigError(f"{shown}: {(exc.strerror or str(exc)).lower()}") from exc
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    return path


# -- volumes and tmpfs ----------------------------------------------------------------------

_VOLUME_EXPECTED = "expected a volume such as 'name:/path', './dir:/path:ro' or '/path'"


def _target(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"expected an absolute container path, got {show(path)}")
    normal = os.path.normpath(path)
    if normal == "/" or normal.startswith("//"):
        raise ValueError(f"expected a container path other than '/', got {show(path)}")
    return normal


def _volume(kind: str, source: str | None, target: str, ro: bool, base: Path) -> VolumeSpec:
    if kind == "bind":
        if not source:
            raise ValueError(f"expected a host path as the source, got {show(source or '')}")
        return VolumeSpec(type="bind", source=absolute(source, base), target=_target(target),
                          read_only=ro)  # fmt: skip
    if source is None:
        return VolumeSpec(type="anonymous", source=None, target=_target(target), read_only=ro)
    if not NAME_RE.fullmatch(source):
        raise ValueError("expected a volume name such as 'data' or a path starting with "
                         f"'/', '.' or '~', got {show(source)}")  # fmt: skip
    return VolumeSpec(type="volume", source=source, target=_target(target), read_only=ro)


def parse_volume(spec: str, *, base: Path | None = None) -> VolumeSpec:
    """Compose's short syntax: ``SOURCE:TARGET[:ro|rw]`` or ``TARGET``.

    A source starting with ``/``, ``.`` or ``~`` is a bind mount (relative to ``base``, default
    the current folder); any other source is a named volume; no source, an anonymous one.
    """
    parts = spec.split(":")
    if len(parts) > 3 or not spec:
        raise ValueError(f"{_VOLUME_EXPECTED}, got {show(spec)}")
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise ValueError(f"expected mode 'ro' or 'rw', got {show(mode)}")
    if len(parts) == 1:
        return _volume("volume", None, parts[0], False, base or Path.cwd())
    source = parts[0]
    kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
    return _volume(kind, source, parts[1], mode == "ro", base or Path.cwd())


class _LongVolume(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Compose's long syntax for a volume, the keys we implement."""

    type: str
    target: str
    source: str | None = None
    read_only: bool = False


def read_volume(value: object, ctx: Ctx) -> VolumeSpec:
    if isinstance(value, str):
        return parse_volume(value, base=ctx.base)
    long: _LongVolume = typed(value, _LongVolume)
    if long.type not in ("bind", "volume"):
        raise Invalid(f"expected 'bind' or 'volume', got {show(long.type)}", ("type",))
    return _volume(long.type, long.source, long.target, long.read_only, ctx.base)


def show_volume(v: VolumeSpec) -> object:
    if v.source is None:
        return v.target
    if ":" in v.source or ":" in v.target:
        return Inline({"type": "bind" if v.type == "bind" else "volume", "source": v.source,
                       "target": v.target, "read_only": v.read_only})  # fmt: skip
    return f"{v.source}:{v.target}" + (":ro" if v.read_only else "")


def read_volumes_from(value: object, ctx: Ctx) -> VolumesFrom:
    assert isinstance(value, str)
    name, _, mode = value.partition(":")
    if not NAME_RE.fullmatch(name) or mode not in ("", "ro", "rw"):
        raise Invalid(f"expected 'NAME', 'NAME:ro' or 'NAME:rw', got {show(value)}")
    return VolumesFrom(container=name, read_only=mode == "ro")


def show_volumes_from(v: VolumesFrom) -> str:
    return v.container + (":ro" if v.read_only else "")


def parse_tmpfs(spec: str) -> TmpfsSpec:
    """``/run`` or ``/run:size=64m,mode=1777``, as ``docker run --tmpfs``."""
    target, _, options = spec.partition(":")
    size = mode = None
    for option in options.split(",") if options else []:
        key, _, val = option.partition("=")
        if key == "size":
            size = parse_size(val)
            if size <= 0:
                raise ValueError(f"expected a size greater than 0, got {show(val)}")
        elif key == "mode" and re.fullmatch(r"[0-7]{1,4}", val):
            mode = int(val, 8)
        else:
            raise ValueError(f"expected options 'size=SIZE' and 'mode=OCTAL', got {show(option)}")
    return TmpfsSpec(target=_target(target), size=size, mode=mode)


def show_tmpfs(t: TmpfsSpec) -> str:
    options = ([f"size={format_size(t.size)}"] if t.size is not None else []) + (
        [f"mode={t.mode:o}"] if t.mode is not None else []
    )
    return t.target + (":" + ",".join(options) if options else "")


# -- limits ---------------------------------------------------------------------------------

_MIN_MEMORY = 6 << 20  # Docker's minimum memory limit


def read_mem_limit(value: object, ctx: Ctx) -> int:
    size: int = via(parse_size)(value, ctx)
    if size < _MIN_MEMORY:
        raise Invalid(f"expected at least 6m, got {show(value)}")
    return size


def read_memswap(value: object, ctx: Ctx) -> int:
    if value in (-1, "-1"):
        return -1
    size: int = via(parse_size)(value, ctx)
    return size


def show_memswap(size: int) -> str | int:
    return size if size == -1 else format_size(size)


def read_positive_size(value: object, ctx: Ctx) -> int:
    size: int = via(parse_size)(value, ctx)
    if size <= 0:
        raise Invalid(f"expected a size greater than 0, got {show(value)}")
    return size


def read_cpus(value: object, ctx: Ctx) -> float:
    cpus = read_number(value, ctx)
    if cpus <= 0:
        raise Invalid(f"expected a number of CPUs greater than 0 such as 0.5, got {show(value)}")
    return cpus


def read_pids_limit(value: object, ctx: Ctx) -> int:
    limit = read_int(value, ctx)
    if limit < -1:
        raise Invalid(f"expected a number of processes, or -1 or 0 for no limit, got {limit}")
    return limit


def read_caps(value: object, ctx: Ctx) -> list[str]:
    caps: list[str] = []
    for i, name in enumerate(typed(value, list[str])):
        try:
            cap = parse_capability(name)
        except ValueError as exc:
            raise Invalid(str(exc), (i,)) from exc
        if cap not in caps:
            caps.append(cap)
    return caps


def read_ulimits(value: object, ctx: Ctx) -> dict[str, Ulimit]:
    limits: dict[str, Ulimit] = {}
    for name, item in typed(value, dict[str, object]).items():
        if name not in ULIMITS:
            raise Invalid(f"expected a ulimit name such as 'nofile', got {show(name)}", (name,))
        try:
            if isinstance(item, int) and not isinstance(item, bool):
                limits[name] = Ulimit(soft=item, hard=item)
            else:
                limits[name] = typed(item, int | Ulimit)
        except Invalid as exc:
            raise exc.under(name) from exc
    return limits


def show_ulimit(limit: Ulimit) -> Inline:
    return Inline({"soft": limit.soft, "hard": limit.hard})


# -- checks ---------------------------------------------------------------------------------

_HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
HOSTNAME_RE = re.compile(rf"(?=.{{1,64}}$){_HOST_LABEL}(?:\.{_HOST_LABEL})*")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = rf"(?:localhost|{_DOMAIN_PART}(?:\.{_DOMAIN_PART})+|{_DOMAIN_PART}(?=:))(?::\d+)?"
IMAGE_RE = re.compile(  # Docker's reference grammar: [domain/]path[:tag][@digest]
    rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::\w[\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)
USER_RE = re.compile(r"[^:\s]+(?::[^:\s]+)?")


def read_rootfs(value: object, ctx: Ctx) -> str:
    path: str = typed(value, str)
    if not path:
        raise Invalid("expected a directory, got ''")
    return absolute(path, ctx.base)


def read_working_dir(value: object, ctx: Ctx) -> str:
    path: str = typed(value, str)
    if not path.startswith("/"):
        raise Invalid(f"expected an absolute path, got {show(path)}")
    return os.path.normpath(path)


def read_project(value: object, ctx: Ctx) -> str:
    name: str = typed(value, str)
    if not PROJECT_RE.fullmatch(name):
        raise Invalid(f"expected a project name of {PROJECT_RULE}, got {show(name)}")
    return name
