"""What the API shows of a container: `ps` rows, inspect, stats, top rows, `port` lines,
Docker's status text, the `filters` of a listing, and `update`'s re-validated config.
Pure functions of a Service (and a Request for the query parts); the routes are api.py's."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import msgspec

from supervisor import config
from supervisor.errors import SupervisorError
from supervisor.httpserver import HTTPError, Request
from supervisor.linux.netlink import mac_for
from supervisor.protocol import (
    ContainerInspect,
    ContainerSummary,
    NetworkView,
    ProcessRow,
    StatsView,
    UpdateRequest,
)
from supervisor.service import Service


def status_text(service: Service) -> str:
    """Docker's human status column: `Up 5 seconds (healthy)`, `Exited (1) 3 seconds ago`."""
    state = service.state()
    rec = service.container.record
    if state.status in ("running", "paused"):
        text = "Up " + ago(rec.started_at, suffix="")
        if state.paused:
            text += " (Paused)"
        elif state.health is not None:
            health = state.health.status
            text += f" ({'health: starting' if health == 'starting' else health})"
        return text
    if state.status == "restarting":
        return f"Restarting ({rec.exit_code}) " + ago(rec.finished_at)
    if state.status == "exited" and rec.finished_at:
        return f"Exited ({rec.exit_code}) " + ago(rec.finished_at)
    return "Created"


def ago(stamp: str | None, suffix: str = " ago") -> str:
    if not stamp:
        return ""
    seconds = max(0.0, time.time() - datetime.fromisoformat(stamp).timestamp())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}{suffix}"
    n = int(seconds)
    return ("Less than a second" if n < 1 else f"{n} second{'s' if n != 1 else ''}") + suffix


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def port_lines(service: Service) -> list[str]:
    """`docker port`'s lines: "3000/tcp -> 0.0.0.0:8080"."""
    net = service.container.network
    bindings = net.bindings.get(service.name, []) if net is not None else []
    return [f"{b.container_port}/{b.protocol} -> {_host(b.host_ip)}:{b.host_port}"
            for b in bindings]


def summary(service: Service) -> ContainerSummary:
    c = service.container
    argv = list(c.cfg.entrypoint or []) + list(c.cfg.command or [])
    net = c.network
    bindings = net.bindings.get(c.name, []) if net is not None else []
    ports = [f"{_host(b.host_ip)}:{b.host_port}->{b.container_port}/{b.protocol}"
             for b in bindings]
    return ContainerSummary(name=c.name, image=c.cfg.image or c.cfg.rootfs or "",
                            command=" ".join(argv), created=c.record.created,
                            state=service.state(), status=status_text(service), ports=ports,
                            labels=dict(c.cfg.labels))


def inspect(service: Service) -> ContainerInspect:
    c = service.container
    mode = c.cfg.network_mode
    view = NetworkView(mode=mode)
    if c.network is not None and mode == "bridge":
        ip = c.network.leases.leases.get(c.name, "")
        view = NetworkView(mode=mode, ip_address=ip, gateway=c.network.gateway,
                           mac_address=mac_for(ip) if ip else "", ports=port_lines(service))
    return ContainerInspect(name=c.name, project=c.record.project, created=c.record.created,
                            image=c.cfg.image or c.cfg.rootfs or "",
                            config=c.record.config, state=service.state(),
                            mounts=list(c.record.mounts), cgroup=c.record.cgroup,
                            network=view)


def filters(req: Request) -> dict[str, list[str]]:
    """Docker's `filters` JSON ({"status": ["running"]}) or repeated `filter=K=V`."""
    out: dict[str, list[str]] = {}
    raw = req.query_str("filters")
    if raw:
        try:
            decoded = msgspec.json.decode(raw, type=dict[str, list[str]])
        except msgspec.DecodeError as e:
            raise HTTPError(400, f"filters: expected JSON such as "
                            f'{{"status": ["running"]}}: {e}') from None
        out.update(decoded)
    for item in req.query.get("filter", []):
        key, sep, value = item.partition("=")
        if not sep:
            raise HTTPError(400, f"filter: expected KEY=VALUE, got {item!r}")
        out.setdefault(key, []).append(value)
    for key in out:
        if key not in ("name", "status", "health", "id", "container", "label"):
            raise HTTPError(400, f"filters: unknown filter {key!r}, expected name, status, "
                            "health, id, container or label")
    return out


def matches(row: ContainerSummary, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key in ("name", "id", "container") and not any(v in row.name for v in values):
            return False
        if key == "status" and row.state.status not in values:
            return False
        if key == "health" and (row.state.health.status if row.state.health else "none") \
                not in values:
            return False
        for wanted in values if key == "label" else []:  # label=KEY or label=KEY=VALUE
            label, sep, value = wanted.partition("=")
            if label not in row.labels or (sep and row.labels[label] != value):
                return False
    return True


def stats(service: Service, previous: StatsView | None) -> StatsView:
    now = time.time()
    try:
        s = service.container.stats()
    except SupervisorError:
        s = None
    usage = s.cpu_usage_ns if s else 0
    percent = 0.0
    if previous is not None and now > previous.read:
        percent = max(0.0, (usage - previous.cpu_usage_ns) / 1e9 / (now - previous.read) * 100)
    return StatsView(name=service.name, read=now, cpu_usage_ns=usage, cpu_percent=percent,
                     memory_usage=s.memory_usage if s else 0,
                     memory_limit=s.memory_limit if s else None,
                     pids=s.pids_current if s else 0, nr_throttled=s.nr_throttled if s else 0)


def process_row(pid: int) -> ProcessRow | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    ppid = int(stat[stat.rindex(")") + 2:].split()[1])
    uid = next((line.split()[1] for line in status.splitlines() if line.startswith("Uid:")),
               "?")
    command = cmdline.replace(b"\0", b" ").decode(errors="replace").strip() or \
        stat[stat.index("(") + 1:stat.rindex(")")]
    return ProcessRow(pid=pid, ppid=ppid, user=uid, command=command)


def update(service: Service, body: UpdateRequest) -> None:
    """Changed limits, parsed as the stack file's keys; the whole config re-validated."""
    from supervisor.config_lifecycle import parse_restart
    from supervisor.units import parse_size

    changes: dict[str, object] = {}
    try:
        for key in ("mem_limit", "memswap_limit"):
            value = getattr(body, key)
            if value is not None:
                changes[key] = -1 if value in (-1, "-1") else parse_size(value)
        if body.cpus is not None:
            if body.cpus <= 0:
                raise ValueError(f"cpus: expected a number of CPUs above 0, got {body.cpus}")
            changes["cpus"] = body.cpus
        if body.pids_limit is not None:
            changes["pids_limit"] = body.pids_limit
        if body.restart is not None:
            changes["restart"] = parse_restart(body.restart)
    except ValueError as e:
        raise HTTPError(400, f"update: {e}") from None
    try:  # decoding runs the cross-key checks (memswap_limit >= mem_limit...)
        candidate = msgspec.structs.replace(service.container.cfg, **changes)
        cfg = msgspec.json.decode(msgspec.json.encode(candidate), type=config.Container)
    except (msgspec.ValidationError, ValueError) as e:
        raise HTTPError(400, f"update: {e}") from None
    service.container.update_config(cfg)
