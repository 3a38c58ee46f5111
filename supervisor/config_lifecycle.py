"""The keys of a container's life: ``restart``, ``restart_backoff``, ``depends_on`` and
``healthcheck``, with Compose's names and Docker's semantics and defaults.

They are Structs of their own because the supervisor's pure layers (``restart``, ``health``,
``plan``) take them as they are: a policy, a backoff, a dependency, a check.  Each nested table
is read key by key through ``decode_table`` like a container is, so unknown keys and bad values
get the same one-line messages (``containers.web.healthcheck.intervall: unknown key (did you
mean 'interval'?)``).  Rules that must also hold for a Stack decoded from JSON live in
``__post_init__``; rules that need the whole stack (a dependency names a container, a
``service_healthy`` dependency has a check, no cycles) live in ``config.Stack``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, cast

import msgspec

from supervisor.config_keys import (
    Ctx,
    Field,
    Invalid,
    as_table,
    decode_table,
    read_bool,
    read_int,
    typed,
    via,
)
from supervisor.paths import NAME_RE
from supervisor.toml_writer import Inline
from supervisor.units import format_duration, parse_duration, show

# -- restart ------------------------------------------------------------------------------

RestartName = Literal["no", "on-failure", "always", "unless-stopped"]
RESTART_EXPECTED = "expected 'no', 'always', 'unless-stopped', 'on-failure' or 'on-failure:N'"
_RESTART_RE = re.compile(r"(no|always|unless-stopped)|on-failure(?::(\d+))?")


class RestartPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Docker's restart policy; ``max_retries`` 0 means unlimited, as Docker's
    ``MaximumRetryCount``.  ``str()`` is the spelling the file and ``--restart`` take."""

    name: RestartName = "no"
    max_retries: int = 0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise Invalid(f"expected a retry count of 0 or more, got {self.max_retries}")
        if self.max_retries and self.name != "on-failure":
            # Docker refuses this too: the count means nothing to the other policies.
            raise Invalid(f"a retry count needs 'on-failure', got {self.name!r} with "
                          f"{self.max_retries}")  # fmt: skip

    def __str__(self) -> str:
        return f"on-failure:{self.max_retries}" if self.max_retries else self.name


def parse_restart(value: object) -> RestartPolicy:
    """``"no"``, ``"always"``, ``"unless-stopped"``, ``"on-failure"``, ``"on-failure:3"``.

    Raises ValueError with the ``expected X, got Y`` tail, for a key path or a flag in front.
    """
    m = _RESTART_RE.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"{RESTART_EXPECTED}, got {show(value)}")
    if m[1]:
        return RestartPolicy(name=cast(RestartName, m[1]))
    return RestartPolicy(name="on-failure", max_retries=int(m[2] or 0))


def show_restart(policy: RestartPolicy) -> str:
    return str(policy)


# -- restart_backoff ----------------------------------------------------------------------

_DURATION = Field(via(parse_duration), format_duration)


class Backoff(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The delay before a restart: ``initial``, doubled after each restart up to ``max``, back
    to ``initial`` after a run of at least ``reset_after``.  The defaults are Docker's fixed
    ones (moby ``restartmanager``); making them tunable is ours (moby#41856 asks for it).
    ``initial = 0`` means every restart is immediate."""

    initial: Annotated[float, _DURATION] = 0.1
    max: Annotated[float, _DURATION] = 60.0
    reset_after: Annotated[float, _DURATION] = 10.0

    def __post_init__(self) -> None:
        if self.max < self.initial:
            raise Invalid(f"expected a duration of at least initial "
                          f"({format_duration(self.initial)}), got "
                          f"{show(format_duration(self.max))}", ("max",))  # fmt: skip


# -- depends_on ---------------------------------------------------------------------------

Condition = Literal["service_started", "service_healthy", "service_completed_successfully"]
CONDITIONS: tuple[Condition, ...] = (
    "service_started", "service_healthy", "service_completed_successfully")  # fmt: skip


def read_condition(value: object, ctx: Ctx) -> Condition:
    if value not in CONDITIONS:
        raise Invalid("expected 'service_started', 'service_healthy' or "
                      f"'service_completed_successfully', got {show(value)}")  # fmt: skip
    return value


class DependsOn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Compose's long form of one dependency.

    ``restart``: when the dependency is restarted by an explicit operation (``restart``,
    ``up`` recreating it), this container is restarted too; not on a restart by policy.
    ``required = false``: a dependency that fails to start or to become ready is only
    warned about.  Both as Compose.
    """

    condition: Annotated[Condition, Field(read_condition)] = "service_started"
    restart: Annotated[bool, Field(read_bool)] = False
    required: Annotated[bool, Field(read_bool)] = True


def read_depends_on(value: object, ctx: Ctx) -> dict[str, DependsOn]:
    """Compose's two forms: ``["db", "cache"]`` or ``{ db = { condition = "..." } }``."""
    if isinstance(value, list):
        deps: dict[str, DependsOn] = {}
        for i, name in enumerate(typed(value, list[str])):
            if not NAME_RE.fullmatch(name):
                raise Invalid(f"expected a container name, got {show(name)}", (i,))
            if name in deps:
                raise Invalid(f"{name!r} is listed twice", (i,))
            deps[name] = DependsOn()
        return deps
    if not isinstance(value, dict):
        raise Invalid("expected a list of container names or a table of them, "
                      f"got {show(value)}")  # fmt: skip
    tables: dict[str, DependsOn] = {}
    for name, item in value.items():
        try:
            tables[name] = DependsOn(**decode_table(DependsOn, item, ctx))
        except Invalid as exc:
            raise exc.under(name) from exc
    return tables


def show_depends_on(dep: DependsOn) -> Inline:
    return Inline(as_table(dep))


# -- healthcheck --------------------------------------------------------------------------

_TEST_KINDS = ("CMD", "CMD-SHELL", "NONE")
_MIN_PERIOD = 0.001  # Docker refuses intervals and timeouts under 1 ms (other than 0)


def read_health_test(value: object, ctx: Ctx) -> list[str]:
    test: str | list[str] = typed(value, list[str] | str)
    if isinstance(test, str):
        if not test.strip():
            raise Invalid(f"expected a command, got {show(test)}")
        return ["CMD-SHELL", test]  # a string runs through the shell, as Compose
    return test


def read_retries(value: object, ctx: Ctx) -> int:
    retries = read_int(value, ctx)
    if retries < 0:
        raise Invalid(f"expected a number of retries of 0 or more, got {retries}")
    return retries


class Healthcheck(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Docker's HEALTHCHECK, as Compose writes it; the defaults are Docker's.

    ``test`` is ``["CMD", prog, args...]`` (exec'd), ``["CMD-SHELL", line]`` (through
    ``/bin/sh -c``) or ``["NONE"]``.  A check with ``disable`` or ``["NONE"]`` is kept, so that
    the resolved config shows what was written, but it is not ``enabled``: the container
    behaves as having no healthcheck.
    """

    test: Annotated[list[str], Field(read_health_test)]
    interval: Annotated[float, _DURATION] = 30.0
    timeout: Annotated[float, _DURATION] = 30.0
    retries: Annotated[int, Field(read_retries)] = 3
    start_period: Annotated[float, _DURATION] = 0.0
    start_interval: Annotated[float, _DURATION] = 5.0
    disable: Annotated[bool, Field(read_bool)] = False

    @property
    def enabled(self) -> bool:
        return not self.disable and self.test[0] != "NONE"

    def __post_init__(self) -> None:
        if not self.test:
            raise Invalid("expected 'CMD', 'CMD-SHELL' or 'NONE' first, got an empty list",
                          ("test",))  # fmt: skip
        kind, args = self.test[0], self.test[1:]
        if kind not in _TEST_KINDS:
            raise Invalid(f"expected 'CMD', 'CMD-SHELL' or 'NONE', got {show(kind)}", ("test", 0))
        if kind == "CMD" and not args:
            raise Invalid("expected a program after 'CMD', got none", ("test",))
        if kind == "CMD-SHELL" and len(args) != 1:
            # Docker would pass extra items to sh as $0, $1...: almost surely a mistake here.
            raise Invalid(f"expected one command line after 'CMD-SHELL', got {len(args)}",
                          ("test",))  # fmt: skip
        if kind == "NONE" and args:
            raise Invalid(f"expected nothing after 'NONE', got {show(args[0])}", ("test", 1))
        if self.retries < 1:
            raise Invalid(f"expected a number of retries of 1 or more, got {self.retries}",
                          ("retries",))  # fmt: skip
        for key in ("interval", "timeout", "start_interval"):
            seconds: float = getattr(self, key)
            if seconds < _MIN_PERIOD:
                raise Invalid("expected a duration of at least 1ms, got "
                              f"{show(format_duration(seconds))}", (key,))  # fmt: skip


# Docker's API reads 0 as "the default" for these (retries 0 -> 3, interval 0 -> 30s...).
_ZERO_MEANS_DEFAULT = ("interval", "timeout", "retries", "start_interval")


def read_healthcheck(value: object, ctx: Ctx) -> Healthcheck:
    kwargs: dict[str, Any] = decode_table(Healthcheck, value, ctx)
    for key in _ZERO_MEANS_DEFAULT:
        if kwargs.get(key) == 0:
            del kwargs[key]
    if "test" not in kwargs:
        if not kwargs.get("disable"):
            raise Invalid("missing key 'test'")
        kwargs["test"] = ["NONE"]
    return Healthcheck(**kwargs)


def show_healthcheck(check: Healthcheck) -> dict[str, object]:
    return as_table(check)  # a plain table: printed as its own [containers.NAME.healthcheck]
