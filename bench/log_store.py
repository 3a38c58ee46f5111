#!/usr/bin/env python3
"""The log store alone: how fast one container's output is stored, read back and tailed.

    python3 bench/log_store.py [--lines 1000000] [--line-bytes 100] [--runs 3]
                               [--big-gb 1.0] [--tail-runs 20] [--keep]

No root needed.  Everything lives in one temp dir, removed at the end (also on Ctrl-C).

1. append: the prepared output (numbered lines of --line-bytes bytes, like issue 4's `cat` of
   a prepared file) cut into 64 KiB chunks, one `append` per chunk, for each fsync policy.
   Wall, CPU (process_time), lines/s and bytes on disk per line.  The input is in memory,
   so this is the store's own cost.
2. pipe: a fresh worker process runs `cat FILE`, reads its pipe 64 KiB at a time and appends
   each read, then flushes: the supervisor's real path minus trio.  Wall from spawn until
   every line is stored, the worker's CPU and its peak RSS (VmHWM).
3. read: every record (`read`, a `Record` per line) and every byte (`read_raw`, per block).
4. big: a ~--big-gb store (written with fsync "never"), closed, then: open after close
   (sidecar indexes), open as after kill -9 (the active segment scanned and its crcs
   checked), `tail_cursor(10)` + reading those 10 records, `seq_at` a time in the middle +
   10 records from there; --tail-runs each, median.  Warm page cache.
5. design check: the write path's parts per 100 MB, and what a line-offset table would add.

Prints tables on stdout; raw numbers go to bench/results/log_store-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchlib

from logging_bus.store import LogStore

CHUNK = 64 << 10


def make_input(path: Path, lines: int, line_bytes: int) -> None:
    """Numbered lines, each exactly ``line_bytes`` with its newline."""
    pad = b"x" * (line_bytes - 12)
    with path.open("wb") as f:
        for start in range(0, lines, 100_000):
            f.write(b"".join(b"%010d %s\n" % (i, pad)
                             for i in range(start, min(start + 100_000, lines))))


def chunks_of(data: bytes) -> list[bytes]:
    return [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]


def disk_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def bench_append(work: Path, chunks: list[bytes], lines: int, fsync: str) -> dict[str, float]:
    d = work / f"append-{fsync}"
    shutil.rmtree(d, ignore_errors=True)
    store = LogStore.open(d, fsync=fsync)
    wall, cpu = time.perf_counter(), time.process_time()
    for chunk in chunks:
        store.append("web", "stdout", chunk)
    store.flush("web", "stdout")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert store.last_seq == lines, (store.last_seq, lines)
    store.close()
    size = disk_bytes(d)
    shutil.rmtree(d)
    return {"wall_s": wall, "cpu_s": cpu, "lines_per_s": lines / wall,
            "disk_bytes_per_line": size / lines}


def pipe_worker(store_dir: str, input_file: str, lines: int) -> None:
    """Run in a fresh process: `cat` into a pipe, each read appended, as the supervisor."""
    wall, cpu = time.perf_counter(), time.process_time()
    store = LogStore.open(Path(store_dir))
    proc = subprocess.Popen(["cat", input_file], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    reads = 0
    while data := os.read(fd, CHUNK):
        store.append("web", "stdout", data)
        reads += 1
    store.flush("web", "stdout")
    stored = store.last_seq
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    proc.wait()
    store.close()
    hwm = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text()
               .splitlines() if line.startswith("VmHWM:"))
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "lines": stored, "reads": reads,
                      "peak_rss_mb": hwm / 1024,
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def bench_pipe(work: Path, input_file: Path, lines: int) -> dict[str, float]:
    d = work / "pipe"
    shutil.rmtree(d, ignore_errors=True)
    out = subprocess.run([sys.executable, __file__, "--pipe-worker", str(d), str(input_file),
                          str(lines)], capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out)
    assert result["lines"] == lines, result
    shutil.rmtree(d)
    return result


def bench_read(work: Path, chunks: list[bytes], lines: int) -> dict[str, float]:
    d = work / "read"
    with LogStore.open(d, fsync="never") as store:
        for chunk in chunks:
            store.append("web", "stdout", chunk)
        t = time.perf_counter()
        n = sum(1 for _ in store.read(1))
        records_s = time.perf_counter() - t
        assert n == lines
        t = time.perf_counter()
        size = sum(len(c.data) for c in store.read_raw(1))
        raw_s = time.perf_counter() - t
        t = time.perf_counter()
        last = list(store.read(store.tail_cursor(10)))
        tail_ms = (time.perf_counter() - t) * 1000
        assert len(last) == 10
    shutil.rmtree(d)
    return {"records_s": records_s, "records_per_s": lines / records_s, "raw_s": raw_s,
            "raw_mb_per_s": size / raw_s / 1e6, "tail10_ms": tail_ms}


def bench_big(work: Path, chunks: list[bytes], lines: int, gb: float, runs: int
              ) -> dict[str, float]:
    d = work / "big"
    per_pass = sum(map(len, chunks))
    passes = max(1, round(gb * 1e9 / per_pass))
    t = time.perf_counter()
    with LogStore.open(d, fsync="never") as store:
        # A quiet container's last lines lie under the whole GB of web's (issue 4, 7 (c)).
        store.append("quiet", "stdout", b"".join(b"quiet %d\n" % i for i in range(20)),
                     now=1_699_999_999.0)
        for p in range(passes):
            now = 1_700_000_000.0 + p
            for chunk in chunks:
                store.append("web", "stdout", chunk, now=now)
            benchlib.progress(f"big store: {p + 1}/{passes} x {per_pass / 1e6:.0f} MB")
        total_lines = store.last_seq
    write_s = time.perf_counter() - t
    size = disk_bytes(d)
    opens, crashed, tails, seeks, quiet = [], [], [], [], []
    for _ in range(runs):
        last = sorted(d.glob("*.seg"))[-1]
        last.with_suffix(".idx").unlink()  # as after kill -9: the active segment is scanned
        t = time.perf_counter()
        LogStore.open(d, fsync="never").close()
        crashed.append(time.perf_counter() - t)
        t = time.perf_counter()
        store = LogStore.open(d, fsync="never")
        opens.append(time.perf_counter() - t)
        t = time.perf_counter()
        got = list(store.read(store.tail_cursor(10)))
        tails.append(time.perf_counter() - t)
        assert [r.seq for r in got] == list(range(total_lines - 9, total_lines + 1))
        t = time.perf_counter()
        seq = store.seq_at(1_700_000_000.0 + passes / 2)
        mid = list(store.read(seq, limit=10))
        seeks.append(time.perf_counter() - t)
        assert len(mid) == 10 and mid[0].seq == -(-passes // 2) * lines + 20 + 1
        t = time.perf_counter()
        buried = list(store.read(store.tail_cursor(10, {"quiet"}), containers={"quiet"}))
        quiet.append(time.perf_counter() - t)
        assert [r.line for r in buried] == [b"quiet %d" % i for i in range(10, 20)]
        store.close()
    segments = len(list(d.glob("*.seg")))
    shutil.rmtree(d)
    return {"bytes": size, "lines": total_lines, "segments": segments, "write_s": write_s,
            "open_ms": statistics.median(opens) * 1000,
            "open_after_crash_ms": statistics.median(crashed) * 1000,
            "tail10_ms": statistics.median(tails) * 1000,
            "since_seek10_ms": statistics.median(seeks) * 1000,
            "quiet_tail10_ms": statistics.median(quiet) * 1000}


def design_check(chunks: list[bytes]) -> dict[str, float]:
    """Seconds per pass over the input for each part of the write path, and the table."""
    nl = re.compile(b"\n")
    parts = {
        "bytes.count": lambda c: c.count(b"\n"),
        "zlib.crc32": zlib.crc32,
        "offset table (re.finditer)": lambda c: array("I", [m.end() for m in nl.finditer(c)]),
        "per-line split (bytes.split)": lambda c: c.split(b"\n"),
    }
    out = {}
    for name, fn in parts.items():
        t = time.perf_counter()
        for chunk in chunks:
            fn(chunk)
        out[name] = time.perf_counter() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--line-bytes", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--big-gb", type=float, default=1.0)
    ap.add_argument("--tail-runs", type=int, default=20)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--pipe-worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pipe_worker:
        pipe_worker(args.pipe_worker[0], args.pipe_worker[1], int(args.pipe_worker[2]))
        return
    benchlib.interruptible()
    work = benchlib.make_workdir("supervise-bench-logstore-")
    try:
        run(args, work)
    finally:
        benchlib.uninterruptible()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        left = "none" if not work.exists() else str(work)
        print(f"\nleftovers: {left}")


def run(args: argparse.Namespace, work: Path) -> None:
    lines = args.lines
    input_file = work / "input.log"
    make_input(input_file, lines, args.line_bytes)
    chunks = chunks_of(input_file.read_bytes())
    results: dict[str, object] = {"machine": benchlib.machine_info(), "lines": lines,
                                  "line_bytes": args.line_bytes, "chunk": CHUNK}

    appends: dict[str, list[dict[str, float]]] = {}
    for fsync in ("1s", "never", "always"):
        runs = args.runs if fsync != "always" else 1
        appends[fsync] = []
        for i in range(runs):
            benchlib.progress(f"append fsync={fsync} run {i + 1}/{runs}")
            appends[fsync].append(bench_append(work, chunks, lines, fsync))
    pipes = []
    for i in range(args.runs):
        benchlib.progress(f"pipe run {i + 1}/{args.runs}")
        pipes.append(bench_pipe(work, input_file, lines))
    benchlib.progress("read")
    read = bench_read(work, chunks, lines)
    big = bench_big(work, chunks, lines, args.big_gb, args.tail_runs) if args.big_gb else {}
    check = design_check(chunks)
    benchlib.progress("done", final=True)
    results.update(append=appends, pipe=pipes, read=read, big=big, design_check=check)

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(f"\n{lines:,} lines x {args.line_bytes} B in 64 KiB chunks "
          f"(median of {args.runs} runs; 'always' 1 run)\n")
    table = []
    for fsync, rows in appends.items():
        table.append([f"append, fsync={fsync}", f"{med(rows, 'wall_s'):.3f}",
                      f"{med(rows, 'cpu_s'):.3f}", f"{med(rows, 'lines_per_s') / 1e6:.2f} M",
                      f"{med(rows, 'disk_bytes_per_line'):.2f}", "-"])
    table.append(["cat | read 64 KiB | append (worker)", f"{med(pipes, 'wall_s'):.3f}",
                  f"{med(pipes, 'cpu_s'):.3f}", f"{lines / med(pipes, 'wall_s') / 1e6:.2f} M",
                  "-", f"{max(p['peak_rss_mb'] for p in pipes):.1f}"])
    benchlib.print_table(["write", "wall s", "cpu s", "lines/s", "disk B/line", "peak RSS MB"],
                         table)
    print()
    benchlib.print_table(["read", "time", "rate"], [
        ["read(1): a Record per line", f"{read['records_s']:.3f} s",
         f"{read['records_per_s'] / 1e6:.2f} M lines/s"],
        ["read_raw(1): bytes per block", f"{read['raw_s']:.3f} s",
         f"{read['raw_mb_per_s']:.0f} MB/s"],
        ["tail_cursor(10) + read", f"{read['tail10_ms']:.2f} ms", "-"]])
    if big:
        print(f"\nbig store: {big['bytes'] / 1e9:.2f} GB, {big['lines']:,} lines, "
              f"{big['segments']} segments, written in {big['write_s']:.1f} s "
              f"(median of {args.tail_runs})\n")
        benchlib.print_table(["big store", "ms"], [
            ["open after close (sidecar indexes)", f"{big['open_ms']:.1f}"],
            ["open after kill -9 (last segment scanned, crc)",
             f"{big['open_after_crash_ms']:.1f}"],
            ["tail_cursor(10) + read 10", f"{big['tail10_ms']:.2f}"],
            ["seq_at(middle) + read 10", f"{big['since_seek10_ms']:.2f}"],
            ["a quiet container under it: tail_cursor(10, {quiet}) + read 10",
             f"{big['quiet_tail10_ms']:.2f}"]])
    print("\ndesign check: seconds per pass over the input\n")
    benchlib.print_table(["part", "s"], [[k, f"{v:.3f}"] for k, v in check.items()])
    print(f"\nraw numbers: {benchlib.write_results('log_store', results)}")


if __name__ == "__main__":
    main()
