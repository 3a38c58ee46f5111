"""How the log pipeline's keys are read: `filters` (per container and in `[stack.logs]`) and
`[stack.logs.outputs.NAME]`, each a table whose `type` picks a Struct of ``logging_bus.specs``.

The Structs live in the log bus (which never imports ``supervisor``); a field the file spells
with a unit carries it in its ``msgspec.Meta(extra={"unit": ...})`` and is converted here:
sizes (``"10m"``), durations (``"1s"``), host paths (relative to the stack file).
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Mapping
from typing import Annotated

import msgspec

from logging_bus.specs import FILTERS, OUTPUTS, Output, SpecError
from supervisor.config_keys import (
    NAME_RULE,
    Ctx,
    Field,
    Invalid,
    absolute,
    as_table,
    decode_table,
    each,
    read_positive_size,
    typed,
    via,
)
from supervisor.paths import NAME_RE
from supervisor.toml_writer import Inline
from supervisor.units import parse_duration, show


@functools.cache
def _units(cls: type[msgspec.Struct]) -> dict[str, str]:
    units = {}
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        for meta in typing.get_args(hint)[1:] if typing.get_origin(hint) is Annotated else ():
            if isinstance(meta, msgspec.Meta) and meta.extra and "unit" in meta.extra:
                units[name] = meta.extra["unit"]
    return units


def _read_unit(unit: str, value: object, ctx: Ctx) -> object:
    if unit == "size":
        return read_positive_size(value, ctx)
    if unit == "duration":
        return via(parse_duration)(value, ctx)
    return absolute(typed(value, str), ctx.base)  # "path"


def _tagged(kinds: Mapping[str, type[msgspec.Struct]]) -> Callable[[object, Ctx], typing.Any]:
    names = ", ".join(repr(k) for k in kinds)

    def read(value: object, ctx: Ctx) -> msgspec.Struct:
        if not isinstance(value, dict):
            raise Invalid(f"expected a table with a 'type' of {names}, got {show(value)}")
        kind = value.get("type")
        if kind is None:
            raise Invalid(f"missing key 'type', expected one of {names}")
        if not isinstance(kind, str) or kind not in kinds:
            raise Invalid(f"expected one of {names}, got {show(kind)}", ("type",))
        cls = kinds[kind]
        raw = {k: v for k, v in value.items() if k != "type"}
        for key, unit in _units(cls).items():
            if key in raw:
                try:
                    raw[key] = _read_unit(unit, raw[key], ctx)
                except Invalid as exc:
                    raise exc.under(key) from exc
        for key, item in raw.items():  # msgspec names no key inside a table: we do
            if isinstance(item, dict) and key in cls.__struct_fields__:
                for k, v in item.items():
                    if not isinstance(v, str):
                        raise Invalid(f"expected a string, got {show(v)}", (key, k))
        kwargs = decode_table(cls, raw, ctx)
        for f in msgspec.structs.fields(cls):
            if f.required and f.name not in kwargs:
                raise Invalid(f"missing key {f.name!r}")
        try:
            return cls(**kwargs)
        except SpecError as exc:
            raise Invalid(exc.message, (exc.key,)) from exc

    return read


read_filter = _tagged(FILTERS)
read_output = _tagged(OUTPUTS)


def read_outputs(value: object, ctx: Ctx) -> dict[str, Output]:
    outputs: dict[str, Output] = {}
    for name, raw in typed(value, dict[str, object]).items():
        if not NAME_RE.fullmatch(name):
            raise Invalid(f"expected an output name of {NAME_RULE}, got {show(name)}", (name,))
        try:
            outputs[name] = read_output(raw, ctx)
        except Invalid as exc:
            raise exc.under(name) from exc
    return outputs


def show_spec(spec: msgspec.Struct) -> Inline:
    return Inline({"type": spec.__struct_config__.tag, **as_table(spec)})


FILTERS_FIELD = Field(each(read_filter, dict[str, object]), show_spec)
OUTPUTS_FIELD = Field(read_outputs, show_spec)
