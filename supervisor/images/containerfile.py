"""The Containerfile/Dockerfile language: instructions with their line numbers, and the
variable expansion and word splitting Docker applies to their arguments.

Pure: text in, Structs out.  Errors are ``<file>:<line>: <what>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import msgspec

from supervisor.errors import UsageError

INSTRUCTIONS = frozenset({
    "FROM", "RUN", "COPY", "ADD", "ENV", "WORKDIR", "USER", "CMD", "ENTRYPOINT", "EXPOSE",
    "VOLUME", "LABEL", "ARG", "STOPSIGNAL", "MAINTAINER", "SHELL",
})
# Not (yet) supported, named so the error says so rather than "unknown".
UNSUPPORTED = frozenset({"ONBUILD", "HEALTHCHECK"})
# Instructions whose arguments the builder expands ($VAR); RUN/CMD/ENTRYPOINT are the shell's.
EXPANDED = frozenset({"FROM", "COPY", "ADD", "ENV", "WORKDIR", "USER", "EXPOSE", "VOLUME",
                      "LABEL", "ARG", "STOPSIGNAL"})


class Instruction(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    line: int  # where it starts, 1-based
    name: str  # upper case
    args: str  # the text after the name and flags, continuation lines joined
    flags: dict[str, str] = {}  # --chown=..., --from=...
    exec_form: list[str] | None = None  # a JSON array argument

    @property
    def text(self) -> str:
        """As shown in progress lines and history."""
        flags = "".join(f"--{k}={v} " for k, v in self.flags.items())
        return f"{self.name} {flags}{self.args}".rstrip()


class ContainerfileError(UsageError):
    """A Containerfile is malformed (exit 2, like a bad stack file)."""


_FLAG = re.compile(r"--([a-z][a-z-]*)=(\S*)\s*")


def parse(text: str, where: str = "Containerfile") -> list[Instruction]:
    lines = text.splitlines()
    escape = "\\"
    for line in lines:  # parser directives: only at the very top
        m = re.fullmatch(r"\s*#\s*escape\s*=\s*(\S)\s*", line)
        if not m:
            break
        escape = m[1]
    out: list[Instruction] = []
    i = 0
    while i < len(lines):
        start = i + 1
        raw = lines[i].strip()
        i += 1
        if not raw or raw.startswith("#"):
            continue
        parts = []
        while raw.endswith(escape):
            parts.append(raw[:-1])
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1  # comments and blank lines inside a continuation are dropped
            if i >= len(lines):
                raw = ""
                break
            raw = lines[i].strip()
            i += 1
        parts.append(raw)
        joined = " ".join(p.strip() for p in parts if p.strip())
        out.append(_instruction(joined, start, where))
    if not out:
        raise ContainerfileError(f"{where}: no instructions")
    first = next((x for x in out if x.name != "ARG"), None)
    if first is None or first.name != "FROM":
        at = first.line if first else out[0].line
        raise ContainerfileError(f"{where}:{at}: expected FROM first (after ARGs)")
    return out


def _instruction(text: str, line: int, where: str) -> Instruction:
    name, _, rest = text.partition(" ")
    upper = name.upper()
    if upper in UNSUPPORTED:
        raise ContainerfileError(f"{where}:{line}: {upper} is not supported")
    if upper not in INSTRUCTIONS:
        raise ContainerfileError(f"{where}:{line}: unknown instruction {name!r}")
    rest = rest.strip()
    flags: dict[str, str] = {}
    if upper in ("COPY", "ADD", "FROM", "RUN"):
        while m := _FLAG.match(rest):
            flags[m[1]] = m[2]
            rest = rest[m.end():]
        allowed = {"COPY": {"chown", "chmod"}, "ADD": {"chown", "chmod"}, "FROM": {"platform"},
                   "RUN": set()}[upper]
        unknown = sorted(set(flags) - allowed)
        if unknown:
            raise ContainerfileError(f"{where}:{line}: {upper} --{unknown[0]} is not supported")
    exec_form = None
    if rest.startswith("[") and upper in ("RUN", "CMD", "ENTRYPOINT", "COPY", "ADD", "VOLUME",
                                          "SHELL"):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None  # not JSON: the shell form, as Docker treats it
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            exec_form = value
    if not rest and upper not in ("CMD", "ENTRYPOINT"):
        raise ContainerfileError(f"{where}:{line}: {upper} needs an argument")
    return Instruction(line=line, name=upper, args=rest, flags=flags, exec_form=exec_form)


# -- words and variables --------------------------------------------------------------------


def expand(text: str, env: Mapping[str, str]) -> str:
    """$VAR, ${VAR}, ${VAR:-default}, ${VAR:+alternative}; not inside single quotes; \\$ is
    a literal $.  Quotes are kept (see `words`)."""
    return "".join(_lex(text, env, keep_quotes=True)[0])


def words(text: str, env: Mapping[str, str]) -> list[str]:
    """Whitespace-separated words, quotes removed, variables expanded (Docker's
    ProcessWords)."""
    return _lex(text, env, keep_quotes=False)[1]


def _lex(text: str, env: Mapping[str, str], keep_quotes: bool) -> tuple[list[str], list[str]]:
    out: list[str] = []
    result: list[str] = []
    word: list[str] = []
    in_word = False
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and quote != "'":
            out.append(c + text[i + 1] if keep_quotes else text[i + 1])
            word.append(text[i + 1])
            in_word = True
            i += 2
            continue
        if c in "'\"" and (not quote or quote == c):
            quote = "" if quote else c
            if keep_quotes:
                out.append(c)
            in_word = True
            i += 1
            continue
        if c == "$" and quote != "'":
            value, i = _variable(text, i, env)
            out.append(value)
            word.append(value)
            in_word = True
            continue
        if c.isspace() and not quote:
            if in_word:
                result.append("".join(word))
                word, in_word = [], False
            out.append(c)
            i += 1
            continue
        out.append(c)
        word.append(c)
        in_word = True
        i += 1
    if in_word:
        result.append("".join(word))
    return out, result


def _variable(text: str, i: int, env: Mapping[str, str]) -> tuple[str, int]:
    if text.startswith("${", i):
        end = text.find("}", i)
        if end < 0:
            return text[i:], len(text)
        body = text[i + 2:end]
        m = re.fullmatch(r"(\w+)(?::([-+])(.*))?", body, re.S)
        if not m:
            return text[i:end + 1], end + 1
        value = env.get(m[1], "")
        if m[2] == "-" and not value:
            value = expand(m[3], env)
        elif m[2] == "+":
            value = expand(m[3], env) if value else ""
        return value, end + 1
    m = re.compile(r"\$(\w+)").match(text, i)
    if not m:
        return "$", i + 1
    return env.get(m[1], ""), m.end()


def pairs(ins: Instruction, env: Mapping[str, str], where: str) -> list[tuple[str, str]]:
    """ENV and LABEL: `K=V K2="v 2"`, or the legacy `K value with spaces` (ENV)."""
    items = words(ins.args, env)
    if items and "=" not in items[0]:
        if ins.name != "ENV" or len(items) < 2:
            raise ContainerfileError(f"{where}:{ins.line}: {ins.name}: expected KEY=VALUE, "
                                     f"got {ins.args!r}")
        key, _, value = expand(ins.args, env).strip().partition(" ")
        return [(key, " ".join(words(value, env)))]
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ContainerfileError(f"{where}:{ins.line}: {ins.name}: expected KEY=VALUE, "
                                     f"got {item!r}")
        out.append((key, value))
    return out
