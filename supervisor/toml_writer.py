"""A small TOML writer for what ``supervise config`` prints (the standard library only reads).

Tables are written as ``[a.b]`` sections after their plain keys; an ``Inline`` dict, a dict
inside a list and an empty dict are written inline as ``{ k = v }``.
"""

from __future__ import annotations

import math
import re

_BARE = re.compile(r"[A-Za-z0-9_-]+")


class Inline(dict[str, object]):
    """A table to write inline, ``{ soft = 1, hard = 2 }``."""


def key(name: str) -> str:
    return name if _BARE.fullmatch(name) else string(name)


def string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return ("-" if v < 0 else "") + "inf" if math.isinf(v) else "nan"
        return repr(v)
    if isinstance(v, str):
        return string(v)
    if isinstance(v, list):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        if not v:
            return "{}"
        return "{ " + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _is_section(v: object) -> bool:
    return isinstance(v, dict) and not isinstance(v, Inline) and bool(v)


def dumps(doc: dict[str, object]) -> str:
    lines: list[str] = []
    _table(doc, (), lines)
    return "\n".join(lines).strip("\n") + "\n"


def _table(table: dict[str, object], path: tuple[str, ...], lines: list[str]) -> None:
    plain = {k: v for k, v in table.items() if not _is_section(v)}
    if path and (plain or not any(_is_section(v) for v in table.values())):
        lines.append("")
        lines.append("[" + ".".join(key(p) for p in path) + "]")
    lines.extend(f"{key(k)} = {value(v)}" for k, v in plain.items())
    for k, v in table.items():
        if _is_section(v):
            assert isinstance(v, dict)
            _table(v, (*path, k), lines)
