"""`supervise logs`: the stack's logs from the log store, through the API or from disk.

Fast by construction, since `logs NAME > file` of a million lines must take a tenth of
`podman logs`' time, start-up included:

- plain output of one container (no -t, --json, --grep or --source file) asks for
  ``?raw=1``: the server sends whole blocks of bytes as written in ~1 MiB chunks, and they go
  to stdout with one ``os.write`` each; no object per line on either side;
- this module imports only the standard library client (``lightclient``), ``paths`` and
  ``errors`` up front; msgspec, the printer and the store are imported when a path needs them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from typing import Any

from supervisor.cli_common import client_for, find_project, reachable, when
from supervisor.errors import NoSupervisor, SupervisorError, UsageError
from supervisor.paths import ProjectPaths


def cmd_logs(args: argparse.Namespace) -> int:
    """`docker logs` for one name (bare lines), `docker compose logs` for several or none
    (prefixed, merged in store order).  Without a running supervisor, reads the store on
    disk (a stopped stack's logs stay readable)."""
    paths = find_project(args, required=False)
    if paths is None:
        paths = ProjectPaths.for_project(
            args.project or os.environ.get("SUPERVISE_PROJECT") or "default", os.environ)
    query = _query(args)
    single = len(args.names) == 1
    bare = single and not args.timestamps and not args.json
    live = reachable(paths)
    try:
        if bare:
            query["raw"] = 1
            sys.stdout.flush()
            if live:
                client_for(paths, timeout=None).raw_into(
                    sys.stdout.fileno(), f"/containers/{args.names[0]}/logs", **query)
            else:
                for chunk in _offline_logs(paths, args.names, query):
                    _write_all(sys.stdout.fileno(), chunk)
            return 0
        _print_records(args, paths, query, live)
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
    return 0


def _query(args: argparse.Namespace) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if args.follow:
        query["follow"] = 1
    if args.tail is not None:
        if args.tail != "all" and not args.tail.isdigit():
            raise UsageError(f"supervise logs: --tail: expected a number of lines or 'all', "
                             f"got {args.tail!r}")
        query["tail"] = args.tail
    if args.since:
        query["since"] = when(args.since, "--since")
    if args.until:
        query["until"] = when(args.until, "--until")
    if args.grep:
        query["grep"] = args.grep
    if args.source:
        query["source"] = args.source
    return query


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _print_records(args: argparse.Namespace, paths: ProjectPaths, query: dict[str, Any],
                   live: bool) -> None:
    """NDJSON records: as they are (--json), or as lines with prefixes and stamps."""
    import msgspec

    from logging_bus.record import LogLine
    from supervisor.printer import LinePrinter

    single = len(args.names) == 1
    names = list(args.names)
    if not names:  # prefixes as wide as the longest name, as Compose's
        if live:
            names = [row["name"] for row in client_for(paths).get("/containers/json", all=1)]
        else:
            from supervisor.container import list_records

            names = [record.name for record in list_records(paths)]
    printer = LinePrinter(names, color=not args.no_color and sys.stdout.isatty(),
                          prefix=not single and not args.no_log_prefix)
    out = sys.stdout.buffer
    decoder = msgspec.json.Decoder(LogLine)
    stamps = _Stamps()
    for line in _log_stream(paths, args.names, query, live):
        if args.json:
            out.write(line + b"\n")
        else:
            record = decoder.decode(line)
            text = record.line.encode()
            if args.timestamps:
                text = stamps.of(record.time) + text
            text += b"" if record.partial else b"\n"
            if single:  # bare lines: no prefix to add, no line to keep apart
                out.write(text)
            else:
                printer.add(record.container)
                printer.write(record.container, record.source, text)
        if args.follow:
            out.flush()
    printer.flush_all()
    out.flush()


class _Stamps:
    """RFC 3339 stamps, made once per block: every line of a block has the same time."""

    def __init__(self) -> None:
        self._time = -1.0
        self._stamp = b""

    def of(self, t: float) -> bytes:
        if t != self._time:
            from datetime import UTC, datetime

            self._time = t
            self._stamp = datetime.fromtimestamp(t, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ ").encode()
        return self._stamp


def _log_stream(paths: ProjectPaths, names: list[str], query: dict[str, Any], live: bool
                ) -> Iterator[bytes]:
    """NDJSON lines (or raw chunks) from the supervisor, or from the store on disk."""
    if live:
        client = client_for(paths, timeout=None)
        if len(names) == 1:
            yield from client.stream("GET", f"/containers/{names[0]}/logs", **query)
        else:
            yield from client.stream("GET", "/logs", container=names, **query)
        return
    yield from _offline_logs(paths, names, query)


def _offline_logs(paths: ProjectPaths, names: list[str], query: dict[str, Any]
                  ) -> Iterator[bytes]:
    if not paths.logs.is_dir():
        raise NoSupervisor(f"project {paths.project} has no logs (and no supervisor running)")
    import msgspec
    import trio

    from logging_bus import query as log_query
    from logging_bus.errors import LogBusError
    from logging_bus.record import LogLine
    from logging_bus.store import LogStore

    tail = query.get("tail")
    q = log_query.Query(containers=frozenset(names) if names else None,
                        source=query.get("source"),
                        tail=None if tail in (None, "all") else int(tail),
                        since=query.get("since"), until=query.get("until"),
                        grep=query.get("grep"), follow=False)
    try:
        store = LogStore.open(paths.logs, fsync="never")
    except LogBusError as e:
        raise SupervisorError(f"log store {paths.logs}: {e}") from e
    try:
        if query.get("raw") and q.plain:
            for chunk in log_query.raw_chunks(store, q):
                yield chunk.data
            return

        async def collect() -> list[bytes]:
            return [record.raw if query.get("raw") else
                    msgspec.json.encode(LogLine.of(record))
                    async for record in log_query.records(store, q)]

        yield from trio.run(collect)
    except LogBusError as e:
        raise UsageError(str(e)) from e
    finally:
        store.close()
