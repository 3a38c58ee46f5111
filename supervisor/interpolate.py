"""``${VAR}`` interpolation and ``.env`` / ``env_file`` parsing, by Compose's rules.

- ``$VAR`` and ``${VAR}``: the value, or ``""`` when unset.
- ``${VAR:-default}`` / ``${VAR-default}``: the default when unset or empty / when unset.
- ``${VAR:?message}`` / ``${VAR?message}``: an error when unset or empty / when unset.
- ``${VAR:+other}`` / ``${VAR+other}``: ``other`` when set and non-empty / when set.
- ``$$`` is a literal ``$``; a ``$`` not followed by a name, ``{`` or ``$`` stays as it is.
- Defaults and messages are interpolated themselves, so ``${A:-${B}}`` works.

Errors are ``ValueError`` carrying the ``<what>`` of a message; the caller names the place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")
_FORMS = "expected '${NAME}', '${NAME:-default}', '${NAME:?message}' or '$$' for a '$'"


class InterpolationError(ValueError):
    """A ``${...}`` that is malformed, or a required variable that is missing."""


def interpolate(text: str, lookup: Mapping[str, str]) -> str:
    if "$" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        dollar = text.find("$", i)
        if dollar < 0:
            out.append(text[i:])
            break
        out.append(text[i:dollar])
        i = dollar + 1
        if i < n and text[i] == "$":
            out.append("$")
            i += 1
        elif i < n and text[i] == "{":
            end = _closing_brace(text, i + 1)
            if end < 0:
                raise InterpolationError(f"invalid interpolation, {_FORMS}, got {text[dollar:]!r}")
            out.append(_braced(text[i + 1 : end], text[dollar : end + 1], lookup))
            i = end + 1
        elif m := _NAME.match(text, i):
            out.append(lookup.get(m.group(), ""))
            i = m.end()
        else:
            out.append("$")
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    """The index of the ``}`` that closes a ``${`` opened before ``start``, or -1."""
    depth, i = 1, start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _braced(body: str, whole: str, lookup: Mapping[str, str]) -> str:
    m = _NAME.match(body)
    if not m:
        raise InterpolationError(f"invalid interpolation, {_FORMS}, got {whole!r}")
    name, rest = m.group(), body[m.end() :]
    if not rest:
        return lookup.get(name, "")
    op = next((op for op in _OPERATORS if rest.startswith(op)), None)
    if op is None:
        raise InterpolationError(f"invalid interpolation, {_FORMS}, got {whole!r}")
    word = rest[len(op) :]
    value = lookup.get(name)
    present = value is not None and (value != "" or ":" not in op)
    if op.endswith("-"):
        return value if present and value is not None else interpolate(word, lookup)
    if op.endswith("+"):
        return interpolate(word, lookup) if present else ""
    if not present or value is None:  # "?": required
        message = interpolate(word, lookup)
        tail = f": {message}" if message else ""
        raise InterpolationError(f"required variable {name} is missing a value{tail}")
    return value


# -- .env and env_file --------------------------------------------------------------------

_KEY = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(=?)\s*(.*)", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def read_env_file(path: Path, display: str, lookup: Mapping[str, str]) -> dict[str, str]:
    """KEY=VALUE lines as Compose reads ``.env`` and ``env_file``.

    ``#`` starts a comment; ``export`` is allowed; ``'single'`` quotes are literal,
    ``"double"`` quotes take ``\\n``-style escapes; unquoted and double-quoted values are
    interpolated from ``lookup`` and the lines above.  A bare ``KEY`` takes its value from
    ``lookup`` (and is left out when unset there).  Errors are ValueError naming ``display``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{display}: not UTF-8 text") from exc
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _KEY.fullmatch(stripped)
        if not m or (not m[2] and m[3]):
            raise ValueError(f"{display}: line {number}: expected KEY=VALUE, got {stripped!r}")
        key, has_value, raw = m[1], m[2], m[3]
        scope = {**values, **lookup}
        if not has_value:
            if key in scope:
                values[key] = scope[key]
            continue
        try:
            values[key] = _env_value(raw, scope)
        except ValueError as exc:
            raise ValueError(f"{display}: line {number}: {exc}") from exc
    return values


def _env_value(raw: str, scope: Mapping[str, str]) -> str:
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        out: list[str] = []
        i = 1
        while i < len(raw) and raw[i] != quote:
            if quote == '"' and raw[i] == "\\" and i + 1 < len(raw):
                out.append(_ESCAPES.get(raw[i + 1], "\\" + raw[i + 1]))
                i += 2
            else:
                out.append(raw[i])
                i += 1
        after = raw[i + 1 :].strip()
        if i >= len(raw) or (after and not after.startswith("#")):
            raise ValueError(f"expected a value in matching quotes, got {raw!r}")
        value = "".join(out)
        return value if quote == "'" else interpolate(value, scope)
    # Unquoted: a '#' after whitespace starts a comment, as Compose reads it.
    value = re.split(r"\s+#", raw, maxsplit=1)[0].strip()
    return interpolate(value, scope)
