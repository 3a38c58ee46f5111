"""Pure text helpers of the shell: sizes, durations, bars, sparklines, safe log text."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import datetime

SPARKS = "▁▂▃▄▅▆▇█"
# CSI and OSC sequences a container may print (colours, titles): dropped, so that a log line
# can never move the shell's cursor or retitle its terminal.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_LINE = 4000  # a 16 KiB line is kept whole in the store; the pane shows its start


def size(n: float) -> str:
    """Bytes as Docker's short units: 512B, 12.3M, 1.5G."""
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            if unit == "B":
                return f"{int(value)}B"
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
        value /= 1024
    return f"{n}B"


def duration(seconds: float) -> str:
    """A short age: 45s, 12m, 3h, 2d."""
    s = max(0, int(seconds))
    for unit, step in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= step:
            return f"{s // step}{unit}"
    return f"{s}s"


def since(stamp: str | None, now: float | None = None) -> float | None:
    """Seconds since an RFC 3339 stamp (None when there is none or it does not parse)."""
    if not stamp:
        return None
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    return (time.time() if now is None else now) - then


def bar(fraction: float, width: int) -> str:
    """A filled bar: ███░░░."""
    if width <= 0:
        return ""
    filled = round(min(1.0, max(0.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def sparkline(values: Sequence[float | None], top: float) -> str:
    """One block per value, scaled to `top`; None (no sample in that slot) is a space."""
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif top <= 0:
            out.append(SPARKS[0])
        else:
            out.append(SPARKS[min(len(SPARKS) - 1, int(v / top * (len(SPARKS) - 1) + 0.5))])
    return "".join(out)


def buckets(samples: Sequence[tuple[float, float]], start: float, end: float,
            count: int) -> list[float | None]:
    """Time-ordered (time, value) samples in `count` equal slots over [start, end): the
    largest value of each slot, so that a short spike stays visible; None where empty."""
    out: list[float | None] = [None] * max(0, count)
    if count <= 0 or end <= start:
        return out
    step = (end - start) / count
    for t, v in samples:
        if start <= t < end:
            i = min(count - 1, int((t - start) / step))
            current = out[i]
            out[i] = v if current is None else max(current, v)
    return out


def clean(text: str) -> str:
    """A log line made safe for a terminal cell grid: escapes dropped, tabs expanded,
    other control characters shown as `?`, cut at MAX_LINE characters."""
    if "\x1b" in text:
        text = _ESCAPES.sub("", text)
    if "\t" in text:
        text = text.expandtabs(4)
    text = text.rstrip("\r\n")
    if _CONTROLS.search(text):
        text = _CONTROLS.sub("?", text)
    if len(text) > MAX_LINE:
        text = text[:MAX_LINE] + "…"
    return text


def fit(text: str, width: int) -> str:
    """Cut or pad to exactly `width` characters (… marks a cut)."""
    if width <= 0:
        return ""
    if len(text) > width:
        return text[: width - 1] + "…" if width > 1 else text[:width]
    return text.ljust(width)
