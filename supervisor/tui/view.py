"""What the full-screen shell draws: the table, the sparklines, the log and output panes,
the bars.  Functions of the model that return prompt_toolkit fragments; only the lines
on screen are built, so a redraw costs the same with 50 lines or 5000 in the buffer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.layout.controls import UIContent, UIControl
from prompt_toolkit.styles import Style
from prompt_toolkit.utils import get_cwidth

from supervisor.protocol import ContainerSummary
from supervisor.tui import fmt
from supervisor.tui.model import HISTORY_SECONDS, Entry, LogPane, Model

# Colours for people with them; reverse and bold carry the meaning for those without
# (NO_COLOR, a monochrome terminal): prompt_toolkit drops only the colours.
STYLE = Style.from_dict({
    "title": "reverse bold",
    "header": "bold underline",
    "selected": "reverse",
    "state.running": "ansigreen",
    "state.restarting": "ansired bold",
    "state.exited": "ansiyellow",
    "state.paused": "ansiblue",
    "health.healthy": "ansigreen",
    "health.unhealthy": "ansired bold",
    "health.starting": "ansiyellow",
    "spark": "ansicyan",
    "dim": "ansibrightblack",
    "pane": "reverse",
    "time": "ansibrightblack",
    "stderr": "ansired",
    "event": "ansimagenta bold",
    "note": "ansibrightblack italic",
    "match": "reverse",
    "match.current": "reverse bold underline",
    "status": "",
    "status.error": "ansired bold",
    "help": "reverse",
    "prompt": "bold",
    "output.stderr": "ansired",
})
NAME_COLORS = ("ansicyan", "ansiyellow", "ansigreen", "ansimagenta", "ansiblue", "ansired")


# -- the table ------------------------------------------------------------------------------

def table_rows_for(model: Model, height: int) -> int:
    """How many container rows the table gets at this terminal height."""
    budget = max(3, int((height - 9) * 0.45))
    return max(1, min(len(model.rows), budget))


def table(model: Model, width: int, rows: int, now: float | None = None
          ) -> StyleAndTextTuples:
    now = time.time() if now is None else now
    names = model.names()
    name_w = max([4, *(len(n) for n in names)])
    name_w = min(name_w, 16)
    cells = [_row_cells(model, row, now) for row in model.rows.values()]
    restart_w = max([8, *(len(c[3][1]) for c in cells)])
    spark_w = 12 if width >= 112 else 0
    widths = [name_w, 10, 9, restart_w, 6, 6, 17, 4]
    titles = ["NAME", "STATE", "HEALTH", "RESTARTS", "UPTIME", "CPU%", "MEMORY", "PIDS"]
    if spark_w:
        widths.insert(6, spark_w)
        titles.insert(6, "CPU 60s")
    health = any(r.state.health for r in model.rows.values())
    if not health:  # no healthchecks in the stack: the room goes to the ports
        del widths[2], titles[2]
        cells = [[*c[:2], *c[3:]] for c in cells]
    used = sum(widths) + len(widths)
    widths.append(max(0, width - used))
    titles.append("PORTS")
    out: StyleAndTextTuples = []
    header = " ".join(fmt.fit(t, w) for t, w in zip(titles, widths, strict=True))
    out.append(("class:header", fmt.fit(header, width)))
    out.append(("", "\n"))
    if not cells:
        out.append(("class:dim", fmt.fit(" no containers" if model.connected else "", width)))
        return out
    # keep the selection on screen: scroll the table by whole rows
    index = names.index(model.selected) if model.selected in names else 0
    top = max(0, min(index - rows + 1 + rows // 2, len(names) - rows))
    top = min(top, index)
    for i in range(top, min(len(names), top + rows)):
        row = cells[i]
        if spark_w:
            at = 6 if health else 5
            row = [*row[:at], ("class:spark", _cpu_spark(model, names[i], spark_w, now)),
                   *row[at:]]
        selected = names[i] == model.selected
        line: StyleAndTextTuples = []
        used = 0
        for (style, text), w in zip([*row, ("", "")], widths, strict=False):
            if used >= width:
                break
            piece = fmt.fit(text, min(w, width - used))
            line.append((style, piece))
            used += len(piece)
            if used < width:
                line.append(("", " "))
                used += 1
        if used < width:
            line.append(("", " " * (width - used)))
        if selected:
            line = [("class:selected " + f[0], f[1]) for f in line]
        out.extend(line)
        out.append(("", "\n"))
    out.pop()
    return out


def _row_cells(model: Model, row: ContainerSummary, now: float) -> list[tuple[str, str]]:
    state = row.state
    status = state.status
    health = state.health.status if state.health else "-"
    restarts = str(state.restart_count)
    if state.next_restart_at:
        restarts += f" in {max(0.0, state.next_restart_at - now):.1f}s"
    uptime = "-"
    if status in ("running", "paused"):
        age = fmt.since(state.started_at, now)
        uptime = fmt.duration(age) if age is not None else "-"
    elif status == "exited" and state.exit_code is not None:
        status = f"exited({state.exit_code})"
    stats = model.stats.get(row.name)
    sample = stats.latest if stats and status in ("running", "paused") else None
    cpu = f"{sample.cpu_percent:5.1f}" if sample else "-"
    memory = pids = "-"
    if sample:
        limit = sample.memory_limit or model.memory_total
        memory = f"{fmt.size(sample.memory_usage)}/{fmt.size(limit) if limit else '?'}"
        memory = f"{memory:<11} " + fmt.bar(sample.memory_usage / limit if limit else 0, 5)
        pids = str(sample.pids)
    return [("bold", row.name), (f"class:state.{state.status}", status),
            (f"class:health.{health}", health), ("", restarts), ("", uptime), ("", cpu),
            ("", memory), ("", pids), ("", ", ".join(row.ports))]


def _cpu_spark(model: Model, name: str, width: int, now: float) -> str:
    stats = model.stats.get(name)
    if not stats:
        return ""
    values = fmt.buckets(stats.cpu(now - 60), now - 60, now, width)
    return fmt.sparkline(values, max([1.0, *(v for v in values if v is not None)]))


def detail(model: Model, width: int, now: float | None = None) -> StyleAndTextTuples:
    """Two lines for the selected container: CPU and memory over the last five minutes."""
    now = time.time() if now is None else now
    name = model.selected
    stats = model.stats.get(name) if name else None
    if not name or stats is None or not stats.history:
        return [("class:dim", fmt.fit(f" {name or ''}: no samples yet" if name else "", width))]
    latest = stats.latest
    span = f"{int(HISTORY_SECONDS // 60)}m"
    label_w = max(8, min(16, len(name)))
    out: StyleAndTextTuples = []
    for kind in ("cpu", "mem"):
        samples = stats.cpu() if kind == "cpu" else stats.memory()
        if kind == "cpu":
            top = max([1.0, *(v for _, v in samples)])
            now_text = f"{latest.cpu_percent:5.1f}%" if latest else "-"
            tail = f" max {top:.1f}% ({span})"
        else:
            limit = (latest.memory_limit if latest else None) or model.memory_total
            top = float(limit or max([1.0, *(v for _, v in samples)]))
            now_text = fmt.size(latest.memory_usage) if latest else "-"
            tail = f" of {fmt.size(top)} ({span})"
        head = f" {fmt.fit(name if kind == 'cpu' else '', label_w)} {kind} {now_text:>7} "
        spark_w = max(0, width - len(head) - len(tail))
        values = fmt.buckets(samples, now - HISTORY_SECONDS, now, spark_w)
        out += [("bold", head), ("class:spark", fmt.sparkline(values, top)),
                ("class:dim", fmt.fit(tail, width - len(head) - spark_w)), ("", "\n")]
    out.pop()
    return out


# -- the log pane ---------------------------------------------------------------------------

def _name_style(name: str) -> str:
    return NAME_COLORS[sum(name.encode()) % len(NAME_COLORS)]


def entry_fragments(entry: Entry, pane: LogPane, index: int, name_w: int | None
                    ) -> StyleAndTextTuples:
    stamp = datetime.fromtimestamp(entry.time).strftime("%H:%M:%S ")
    out: StyleAndTextTuples = [("class:time", stamp)]
    if entry.kind == "event":
        out += [("class:event", f"● {entry.container} {entry.text}")]
        return _highlight(out, pane, index, 1)
    if entry.kind == "note":
        return [*out, ("class:note", f"— {entry.text}")]
    if name_w is not None:
        out.append((_name_style(entry.container), f"{entry.container:<{name_w}} | "))
    out.append(("class:stderr" if entry.stderr else "", entry.text))
    return _highlight(out, pane, index, len(out) - 1)


def _highlight(frags: StyleAndTextTuples, pane: LogPane, index: int, at: int
               ) -> StyleAndTextTuples:
    """Marks the search's matches in fragment `at` (the line's text)."""
    if pane.pattern is None:
        return frags
    style, text = frags[at][0], frags[at][1]
    spans = [m.span() for m in pane.pattern.finditer(text) if m.end() > m.start()]
    if not spans:
        return frags
    mark = "class:match.current" if index == pane.match else "class:match"
    pieces: StyleAndTextTuples = []
    last = 0
    for start, end in spans:
        pieces += [(style, text[last:start]), (f"{style} {mark}", text[start:end])]
        last = end
    pieces.append((style, text[last:]))
    return [*frags[:at], *[p for p in pieces if p[1]], *frags[at + 1:]]


def wrap(frags: StyleAndTextTuples, width: int, indent: int = 0
         ) -> list[StyleAndTextTuples]:
    """Cuts a line's fragments into rows of `width` cells (wide characters count two); the
    rows after the first start `indent` cells in, under the text rather than the prefix."""
    if indent * 2 > width:
        indent = 0
    rows: list[StyleAndTextTuples] = [[]]
    used = 0

    def new_row() -> int:
        rows.append([("", " " * indent)] if indent else [])
        return indent

    for item in frags:
        style, text = item[0], item[1]
        if text.isascii():
            while text:
                room = width - used
                if room <= 0:
                    used = new_row()
                    room = width - used
                rows[-1].append((style, text[:room]))
                used += min(room, len(text))
                text = text[room:]
            continue
        for ch in text:
            w = get_cwidth(ch)
            if used + w > width:
                used = new_row()
            rows[-1].append((style, ch))
            used += w
    return rows


class TailControl(UIControl):
    """A pane that shows the bottom of a list of lines (or, given `top`, the lines from
    there down), wrapped: only what fits is built."""

    def __init__(self, lines: Callable[[], tuple[int, int]],
                 line: Callable[[int, int], StyleAndTextTuples],
                 top: Callable[[], int | None] | None = None,
                 indent: Callable[[], int] | None = None) -> None:
        self._lines = lines  # () -> (first index, end index)
        self._line = line  # (index, width) -> fragments
        self._top = top  # () -> an index to show from the top down (None: the bottom)
        self._indent = indent  # () -> where wrapped rows start

    def is_focusable(self) -> bool:
        return True  # the view's keys (Esc) live on the log pane

    def create_content(self, width: int, height: int) -> UIContent:
        first, end = self._lines()
        rows: list[StyleAndTextTuples] = []
        top = self._top() if self._top else None
        indent = self._indent() if self._indent else 0
        width = max(1, width)
        if top is not None:
            i = max(first, top)
            while i < end and len(rows) < height:
                rows += wrap(self._line(i, width), width, indent)
                i += 1
            rows = rows[:height]
        else:
            i = end - 1
            while i >= first and len(rows) < height:
                rows[:0] = wrap(self._line(i, width), width, indent)
                i -= 1
            rows = rows[-height:] if height > 0 else []

        def get_line(n: int) -> StyleAndTextTuples:
            return rows[n] if n < len(rows) else []

        return UIContent(get_line=get_line, line_count=len(rows), show_cursor=False)


def log_lines(model: Model) -> tuple[int, int]:
    return model.logs.dropped, model.logs.bottom_index()


def _name_width(model: Model) -> int | None:
    """The name column of the log pane when it follows all (None: one container)."""
    if model.target is not None:
        return None
    return min(16, max([4, *(len(n) for n in model.rows)]))


def log_line(model: Model, index: int, width: int) -> StyleAndTextTuples:
    entry = model.logs.get(index)
    if entry is None:
        return []
    return entry_fragments(entry, model.logs, index, _name_width(model))


def log_indent(model: Model) -> int:
    """Wrapped rows of a log line start under its text: after `HH:MM:SS name | `."""
    name_w = _name_width(model)
    return 9 + (name_w + 3 if name_w is not None else 0)


def log_title(model: Model, width: int) -> StyleAndTextTuples:
    logs = model.logs
    what = f"logs: {model.target or 'all'}"
    state = "following" if logs.following else (
        f"paused, {logs.unseen} new" if logs.unseen else "paused")
    text = f" {what} · {state} "
    if logs.pattern is not None:
        rank, total = logs.match_count()
        text += f"· /{logs.query}  {rank}/{total} " if total else f"· /{logs.query}  no match "
    return [("class:pane", fmt.fit(text, width))]


def output_title(model: Model, width: int) -> StyleAndTextTuples:
    text = f" output: {model.output_title} "
    if model.running:
        text += "· running, Ctrl-C stops it "
    return [("class:pane", fmt.fit(text, width))]


def output_line(model: Model, index: int) -> StyleAndTextTuples:
    text, stderr = model.output[index]
    return [("class:output.stderr" if stderr else "", text)]


# -- bars -----------------------------------------------------------------------------------

def title(model: Model, width: int, now: float | None = None) -> StyleAndTextTuples:
    now = time.time() if now is None else now
    running = sum(1 for r in model.rows.values() if r.state.status == "running")
    link = "" if model.connected else " · offline"
    left = f" supervise · {model.project} · {running}/{len(model.rows)} running{link}"
    right = datetime.fromtimestamp(now).strftime("%H:%M ")
    return [("class:title", fmt.fit(left, max(0, width - len(right))) + right)]


def status(model: Model, width: int) -> StyleAndTextTuples:
    s = model.status
    style = "class:status.error" if s.error else "class:status"
    return [(style, fmt.fit(" " + s.text if s.text else "", width))]


HELP = {  # the most needed first: a narrow terminal cuts the end
    "command": ["⏎ run", "Tab complete", "↑↓ history", "/ search", "Esc view", "F1 help",
                "^D quit", "^C stop", "^↑↓ select", "PgUp/PgDn scroll"],
    "view": ["↑↓ select", "⏎ follow", "a all", "/ search", "n/N older/newer", "p pause",
             ": command", "q quit", "r restart", "s stop", "S start", "G newest"],
    "search": ["type to search", "⏎ keep it (then n/N)", "Esc cancel"],
}


def help_bar(mode: str, width: int) -> StyleAndTextTuples:
    text = " " + " · ".join(HELP[mode])
    return [("class:help", fmt.fit(text, width))]
