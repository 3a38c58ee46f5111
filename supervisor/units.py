"""Sizes, durations, signals, capability and ulimit names: parsed as Docker and Compose do.

Every parser raises ``ValueError`` whose text is the ``expected X, got Y`` tail of a message,
so that a caller can put a key path (``containers.web.mem_limit: ...``) or a flag name
(``--memory: ...``) in front of it.  The ``format_*`` functions are the inverses used when the
resolved stack is printed: ``parse_x(format_x(v)) == v``.
"""

from __future__ import annotations

import math
import re
import resource
import signal
from decimal import Decimal

from supervisor.capabilities import CAPABILITIES

# -- showing a value in a message -------------------------------------------------------


def show(value: object) -> str:
    """A value as a message shows it: strings quoted, TOML spelling for the rest."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if len(value) > 60:
            value = value[:57] + "..."
        return repr(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"  # TOML dates and times


# -- sizes --------------------------------------------------------------------------------

_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
# Docker's RAMInBytes: "256m", "256M", "256mb", "256MiB", "1.5g", "100b", "1024".
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?) ?(?:([kmgtp])(?:i?b)?|(b))?", re.IGNORECASE)
SIZE_EXPECTED = "expected a size such as '256m'"


def parse_size(value: str | int) -> int:
    """Bytes from a Docker size: binary units, so ``"256m" == "256M" == 256 MiB``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{SIZE_EXPECTED}, got {show(value)}")
        return value
    if isinstance(value, str) and (m := _SIZE_RE.fullmatch(value.strip())):
        unit = (m.group(2) or m.group(3) or "").lower()
        return int(Decimal(m.group(1)) * _SIZE_UNITS[unit])
    raise ValueError(f"{SIZE_EXPECTED}, got {show(value)}")


def format_size(value: int) -> str | int:
    """The shortest exact spelling: ``268435456 -> "256m"``; plain bytes stay an int."""
    for unit in "ptgmk":
        factor = _SIZE_UNITS[unit]
        if value and value % factor == 0:
            return f"{value // factor}{unit}"
    return value


# -- durations ----------------------------------------------------------------------------

_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10**9,
       "m": 60 * 10**9, "h": 3600 * 10**9}  # fmt: skip
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
DURATION_EXPECTED = "expected a duration such as '10s' or '1m30s'"


def parse_duration(value: str | int | float) -> float:
    """Seconds from a Compose (Go) duration: ``"1m30s"``, ``"500ms"``; a bare number is seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value >= 0 and math.isfinite(value):
            return float(value)
    elif isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return float(Decimal(text))
        parts = _DURATION_PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            total = sum(Decimal(n) * _NS[u] for n, u in parts)
            return float(total / 10**9)
    raise ValueError(f"{DURATION_EXPECTED}, got {show(value)}")


def format_duration(seconds: float) -> str:
    """The Compose spelling of a duration: ``90.0 -> "1m30s"``, ``0.5 -> "500ms"``."""
    exact = Decimal(repr(seconds))
    if 0 < exact < 1:
        for unit, scale in (("ms", 1000), ("us", 1_000_000)):
            if (scaled := exact * scale) == scaled.to_integral_value():
                return f"{int(scaled)}{unit}"
    h, rest = divmod(exact, 3600)
    m, s = divmod(rest, 60)
    text = (f"{h}h" if h else "") + (f"{m}m" if m else "")
    if s or not text:
        text += f"{s.normalize():f}s"
    return text


# -- signals ------------------------------------------------------------------------------

SIGNAL_EXPECTED = "expected a signal such as 'SIGTERM' or 15"
_RT = re.compile(r"RTMIN\+(\d+)|RTMAX-(\d+)")


def parse_signal(value: str | int) -> int:
    """A signal number from ``"SIGTERM"``, ``"TERM"``, ``"sigterm"``, ``"SIGRTMIN+3"``, ``15``."""
    if isinstance(value, str):
        text = value.strip().upper()
        if text.isdigit():
            return parse_signal(int(text))
        name = text.removeprefix("SIG")
        if m := _RT.fullmatch(name):
            number = signal.SIGRTMIN + int(m[1]) if m[1] else signal.SIGRTMAX - int(m[2])
            if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
                return int(number)
        elif name and f"SIG{name}" in signal.Signals.__members__:
            return int(signal.Signals[f"SIG{name}"])
    elif isinstance(value, int) and not isinstance(value, bool) and 0 < value < signal.NSIG:
        return value
    raise ValueError(f"{SIGNAL_EXPECTED}, got {show(value)}")


def signal_name(number: int) -> str:
    """``15 -> "SIGTERM"``, ``37 -> "SIGRTMIN+3"``: the spelling parse_signal reads back."""
    if signal.SIGRTMIN < number < signal.SIGRTMAX:
        return f"SIGRTMIN+{number - signal.SIGRTMIN}"
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


# -- capabilities -------------------------------------------------------------------------


def parse_capability(value: str) -> str:
    """``"cap_net_admin" -> "NET_ADMIN"``; ``"ALL"`` stays ``"ALL"``."""
    name = value.strip().upper().removeprefix("CAP_")
    if name == "ALL" or name in CAPABILITIES:
        return name
    raise ValueError(f"expected a capability such as 'NET_ADMIN' or 'ALL', got {show(value)}")


# -- ulimits ------------------------------------------------------------------------------

_ULIMIT_NAMES = "core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime"

# Docker's ulimit names and the RLIMIT_* number of each.
# RLIMIT_LOCKS (10 on Linux) is the one that Python's resource module does not name.
ULIMITS: dict[str, int] = {
    name: getattr(resource, f"RLIMIT_{name.upper()}", 10)
    for name in (*_ULIMIT_NAMES.split(), "sigpending", "stack")
}
