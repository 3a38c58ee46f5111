"""The `supervise` command line.  The only module (with the TUI) that prints to people."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from supervisor.errors import ApiError, ConfigError, ContainerError, SupervisorError, UsageError

if TYPE_CHECKING:
    from supervisor.paths import ProjectPaths

T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2, like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _default_config() -> Path:
    for name in ("supervise.toml", "stack.toml"):
        if Path(name).exists():
            return Path(name)
    raise UsageError("supervise config: no FILE given and no supervise.toml or stack.toml here")


def cmd_config(args: argparse.Namespace) -> int:
    from supervisor import config

    path = Path(args.file) if args.file else _default_config()
    stack = config.load_stack(path, os.environ, project=args.project)
    sys.stdout.write(config.render(stack, args.format))
    return 0


def _project(args: argparse.Namespace) -> str:
    """-p, then SUPERVISE_PROJECT, then "default" for a container run outside a stack."""
    from supervisor.paths import PROJECT_NAME_RE

    project: str = args.project or os.environ.get("SUPERVISE_PROJECT") or "default"
    if not PROJECT_NAME_RE.fullmatch(project):
        raise UsageError(f"-p/--project: expected a name of lower-case letters, digits, '-' "
                         f"and '_', such as 'web_1', got {project!r}")
    return project


def _paths(args: argparse.Namespace) -> ProjectPaths:
    from supervisor.paths import ProjectPaths

    return ProjectPaths.for_project(_project(args), os.environ)


def _flag(flag: str, parse: Callable[[str], T], value: str) -> T:
    try:
        return parse(value)
    except ValueError as e:
        raise UsageError(f"supervise run: {flag}: {e}") from None


def _run_mapping(args: argparse.Namespace) -> dict[str, object]:
    """`run` flags -> the stack file's keys, so both go through one validation.  What
    depends on the caller (relative paths, `-e KEY` taken from its environment) is resolved
    here, as the supervisor that may validate it has another folder and environment."""
    from supervisor.units import parse_size

    raw: dict[str, object] = {}
    target = args.image
    # A path, unless it reads as an image reference and no such folder exists
    # (`localhost:5000/app:1` names a registry).
    if target.startswith((".", "/")) or ("/" in target and Path(target).is_dir()):
        raw["rootfs"] = str(Path(target).resolve())
    else:
        raw["image"] = target
    if args.command:
        raw["command"] = list(args.command)
    if args.entrypoint is not None:
        raw["entrypoint"] = [args.entrypoint] if args.entrypoint else []
    simple = {"hostname": args.hostname, "working_dir": args.workdir, "user": args.user,
              "stop_signal": args.stop_signal, "restart": args.restart}
    raw.update({k: v for k, v in simple.items() if v is not None})
    if args.stop_timeout is not None:
        raw["stop_grace_period"] = f"{args.stop_timeout}s"
    for flag, key, value in (("--memory", "mem_limit", args.memory),
                             ("--memory-swap", "memswap_limit", args.memory_swap),
                             ("--shm-size", "shm_size", args.shm_size)):
        if value is not None:
            raw[key] = -1 if value == "-1" else _flag(flag, parse_size, value)
    if args.cpus is not None:
        raw["cpus"] = _flag("--cpus", float, args.cpus)
    if args.pids_limit is not None:
        raw["pids_limit"] = _flag("--pids-limit", int, args.pids_limit)
    if args.env:
        # `-e KEY` alone: this shell's value, left out when unset (as docker run)
        raw["environment"] = [item if "=" in item else f"{item}={os.environ[item]}"
                              for item in args.env if "=" in item or item in os.environ]
    if args.env_file:
        raw["env_file"] = [str(Path(f).resolve()) for f in args.env_file]
    if args.volume:
        # ./data or ~/data is the caller's, not the supervisor's working directory
        raw["volumes"] = [_absolute_bind(spec) for spec in args.volume]
    if args.volumes_from:
        raw["volumes_from"] = list(args.volumes_from)
    if args.tmpfs:
        raw["tmpfs"] = list(args.tmpfs)
    for flag, key in (("publish", "ports"), ("expose", "expose"), ("link", "links"),
                      ("add_host", "extra_hosts")):
        if getattr(args, flag):
            raw[key] = list(getattr(args, flag))
    if args.network is not None:
        raw["network_mode"] = args.network
    if args.cap_add:
        raw["cap_add"] = list(args.cap_add)
    if args.cap_drop:
        raw["cap_drop"] = list(args.cap_drop)
    if args.ulimit:
        ulimits: dict[str, object] = {}
        for spec in args.ulimit:
            name, _, limits = spec.partition("=")
            soft, _, hard = limits.partition(":")
            ulimits[name] = {"soft": _flag("--ulimit", int, soft),
                             "hard": _flag("--ulimit", int, hard or soft)}
        raw["ulimits"] = ulimits
    for key in ("init", "read_only", "tty"):
        if getattr(args, key):
            raw[key] = True
    if args.interactive:
        raw["stdin_open"] = True
    return raw


def _run_project(args: argparse.Namespace) -> ProjectPaths:
    """`run`'s project: as other verbs find theirs, else "default" (no stack needed)."""
    from supervisor.cli_common import find_project

    paths = find_project(args, required=False)
    return paths if paths is not None else _paths(args)


def _absolute_bind(spec: str) -> str:
    source, sep, rest = spec.partition(":")
    if sep and source.startswith((".", "~")):
        return f"{Path(source).expanduser().resolve()}:{rest}"
    return spec


def cmd_run(args: argparse.Namespace) -> int:
    import secrets

    from supervisor.cli_common import reachable

    paths = _run_project(args)
    name = args.name or f"run-{secrets.token_hex(3)}"
    raw = _run_mapping(args)
    if reachable(paths) or args.detach:
        # The supervisor validates; config (and msgspec, ~30 ms) is imported here only to
        # word a refusal as this command's own (see _run_in_supervisor).
        return _run_in_supervisor(args, paths, name, raw)
    from supervisor import config

    cfg = config.container_from_mapping(name, raw, where="supervise run")
    import trio

    from supervisor.foreground import run_container

    return trio.run(lambda: run_container(cfg, paths, remove=args.rm,
                                          interactive=args.interactive))


def _run_in_supervisor(args: argparse.Namespace, paths: ProjectPaths, name: str,
                       raw: dict[str, object]) -> int:
    """Docker's `run` against a supervisor: create, then start detached or attached."""
    from supervisor.cli_common import client_for, reachable

    if not reachable(paths):
        _start_detached(paths, None)
    client = client_for(paths, timeout=None)
    try:
        client.post("/containers/create", raw, name=name)
    except ApiError as e:
        if e.status == 400:  # bad flags: said as the in-process run says them (exit 2)
            from supervisor import config

            config.container_from_mapping(name, raw, where="supervise run")
        raise
    if args.detach:
        try:
            client.post(f"/containers/{name}/start")
        except ApiError as e:  # Docker's exit codes: 127 not found, 126 not executable...
            state = client.get(f"/containers/{name}/json")["state"]
            if args.rm:
                client.delete(f"/containers/{name}", force=1, v=1)
            raise SupervisorError(str(e), exit_code=state.get("exit_code") or 125) from None
        print(name)
        return 0
    from supervisor.cli_api import print_frames, shuttle  # not on `run -d`'s path: msgspec

    try:
        if args.tty or args.interactive:
            sock = client.upgrade("POST", f"/containers/{name}/attach", start=1)
            shuttle(sock, interactive=bool(args.interactive), raw=bool(args.tty))
            code = int(client.post(f"/containers/{name}/wait")["StatusCode"])
        else:
            code = print_frames(client.stream("POST", f"/containers/{name}/attach", start=1))
    finally:
        if args.rm:
            client.delete(f"/containers/{name}", force=1, v=1)
    return code


def _start_detached(paths: ProjectPaths, stack_file: Path | None) -> None:
    """Starts `supervise _serve` in the background and waits until its API answers."""
    import time

    from supervisor.cli_common import reachable
    from supervisor.daemon import spawn_detached

    argv = ["-p", paths.project, "_serve"] + ([str(stack_file)] if stack_file else [])
    proc = spawn_detached(argv, paths)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if reachable(paths, strict=False):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    log = paths.run / "supervisor.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
    raise SupervisorError(f"the supervisor of project {paths.project} did not start"
                          + (f": {tail[0]}" if tail else ""))


def cmd_serve(args: argparse.Namespace) -> int:
    """The detached supervisor (`up -d`, `run -d`): notices to the log, no terminal."""
    import trio

    from supervisor import config
    from supervisor.daemon import supervise

    if args.file:
        stack = config.load_stack(Path(args.file), os.environ, project=args.project)
    else:
        stack = config.Stack(project=_project(args), path="", stack=config.StackSettings(),
                             containers={})
    paths = _paths_for(stack.project)

    def notice(line: str) -> None:
        print(line, flush=True)

    return _supervisor_exit(lambda: trio.run(lambda: supervise(stack, paths, notice=notice)))


def _paths_for(project: str) -> ProjectPaths:
    from supervisor.paths import ProjectPaths

    return ProjectPaths.for_project(project, os.environ)


def cmd_up(args: argparse.Namespace) -> int:
    import msgspec

    from supervisor import config
    from supervisor.cli_common import client_for, reachable

    path = Path(args.file) if args.file else _default_config()
    stack = config.load_stack(path, os.environ, project=args.project)
    paths = _paths_for(stack.project)
    from supervisor.cli_images import build_stack_images

    build_stack_images(stack)  # `build = "DIR"`: before anything starts, from the cache
    if reachable(paths):
        # A supervisor runs this project: hand it the edited stack; it recreates what changed.
        result = client_for(paths).post("/stack/up", msgspec.to_builtins(stack))
        for name in result["recreated"]:
            print(f" ✔ Container {name}  Recreated")
        if not result["recreated"]:
            print(f"project {stack.project}: up to date")
        return 0
    if args.detach or args.wait:
        _start_detached(paths, path.resolve())
        checked = {name for name, c in stack.containers.items()
                   if c.healthcheck is not None and c.healthcheck.enabled}
        return _wait_started(paths, list(stack.containers), healthy=args.wait, checked=checked)
    return _up_foreground(args, stack, paths)


def _wait_started(paths: ProjectPaths, names: list[str], healthy: bool,
                  checked: set[str] | None = None) -> int:
    """`up -d` returns once every container has started (or failed); `--wait`, once every
    one is running and healthy where it has a healthcheck."""
    import time

    from supervisor.cli_common import client_for

    client = client_for(paths)
    pending = set(names)
    deadline = time.monotonic() + 300
    failed = 0
    while pending and time.monotonic() < deadline:
        for row in client.get("/containers/json", all=1):
            name, state = row["name"], row["state"]
            if name not in pending:
                continue
            health = state.get("health")
            # `checked`, from the stack file: a run's health state appears a moment after its
            # start, and until then it looks like a container without a check
            has_check = name in checked if checked is not None else health is not None
            if state["status"] == "running" and (not healthy or not has_check or (
                    health is not None and health["status"] == "healthy")):
                print(f" ✔ Container {name}  {'Healthy' if has_check and healthy else 'Started'}")
                pending.discard(name)
            elif state["status"] == "exited" and (state["error"] or healthy) and \
                    state["exit_code"] not in (None, 0):
                print(f" ✘ Container {name}  Error: {state['error'] or 'exited with code '}"
                      f"{'' if state['error'] else state['exit_code']}")
                pending.discard(name)
                failed = 1
            elif state["status"] == "exited" and not healthy:
                print(f" ✔ Container {name}  Started")
                pending.discard(name)
        time.sleep(0.05)
    if pending:
        print(f"timed out waiting for: {', '.join(sorted(pending))}", file=sys.stderr)
        return 1
    return failed


def _up_foreground(args: argparse.Namespace, stack: object, paths: ProjectPaths) -> int:
    import trio

    from supervisor import config
    from supervisor.daemon import supervise
    from supervisor.printer import LinePrinter

    assert isinstance(stack, config.Stack)
    printer = LinePrinter(stack.containers, color=not args.no_color and sys.stdout.isatty(),
                          prefix=not args.no_log_prefix)

    def notice(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if stack.containers:
        print("Attaching to " + ", ".join(stack.containers), flush=True)
    return _supervisor_exit(lambda: trio.run(lambda: supervise(
        stack, paths, notice=notice, printer=printer,
        abort_on_container_exit=args.abort_on_container_exit,
        exit_code_from=args.exit_code_from)))


def _supervisor_exit(run: Callable[[], int]) -> int:
    """A supervisor that cannot run its stack exits 1 (conventions.md), whatever the
    error's own code (125 is `run`'s, Docker's)."""
    try:
        return run()
    except BaseExceptionGroup as group:
        error = _first_supervisor_error(group)
        if error is None:
            raise
        code = error.exit_code if isinstance(error, ConfigError | UsageError) else 1
        raise SupervisorError(str(error), exit_code=code) from None
    except ContainerError as error:
        raise SupervisorError(str(error), exit_code=1) from None


def cmd_down(args: argparse.Namespace) -> int:
    """Stops and removes the project's containers (with -v their volumes too)."""
    import time

    from supervisor import config
    from supervisor.cli_common import client_for, find_project, reachable, supervisor_alive

    paths = find_project(args, required=False)
    if paths is None and args.file:
        paths = _paths_for(config.load_stack(Path(args.file), os.environ).project)
    if paths is None:
        paths = _paths(args)
    if reachable(paths):
        client_for(paths).post("/stack/down", v=int(args.volumes))
        deadline = time.monotonic() + 600
        while supervisor_alive(paths) and time.monotonic() < deadline:
            time.sleep(0.05)
        return 0
    return _down_offline(paths, args.volumes)


def _down_offline(paths: ProjectPaths, volumes: bool) -> int:
    from supervisor.stack import project_lock

    with project_lock(paths):  # never behind a supervisor's or a foreground run's back
        return _remove_project(paths, volumes)


def _remove_project(paths: ProjectPaths, volumes: bool) -> int:
    from supervisor.container import list_records
    from supervisor.volumes import Volumes, remove_tree

    store = Volumes(paths)
    named = set()
    for record in list_records(paths):
        for m in record.mounts:
            if m.anonymous and m.name:
                remove_tree(paths.volumes / m.name)
            elif m.type == "volume" and m.name:
                named.add(m.name)
        remove_tree(paths.container(record.name))
        print(f" ✔ Container {record.name}  Removed")
    if volumes:
        for name in sorted(named):
            store.remove(name, [])
            print(f" ✔ Volume {store.display_name(name)}  Removed")
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    import trio

    from supervisor.cli_api import cmd_exec as exec_via_api
    from supervisor.cli_common import client_for, reachable
    from supervisor.foreground import exec_in_container

    if not args.command:
        raise UsageError("supervise exec: expected a command after the container name")
    paths = _run_project(args)
    if reachable(paths):
        return exec_via_api(args, client_for(paths, timeout=None))
    # No supervisor: the container was started by an in-process `supervise run`.
    env = {}
    for item in args.env or []:
        key, sep, value = item.partition("=")
        if not sep:
            value = os.environ.get(key, "")
        env[key] = value
    return trio.run(lambda: exec_in_container(
        paths, args.name, list(args.command), env=env, user=args.user, workdir=args.workdir,
        interactive=args.interactive, tty=args.tty))


def cmd_rm(args: argparse.Namespace) -> int:
    from supervisor.cli_api import cmd_rm_api
    from supervisor.cli_common import client_for, reachable
    from supervisor.container import load_record
    from supervisor.volumes import Volumes, remove_tree

    paths = _run_project(args)
    if reachable(paths):
        return cmd_rm_api(args, client_for(paths))
    failed = 0
    for name in args.names:
        d = paths.container(name)
        try:
            record = load_record(d / "record.json")
        except FileNotFoundError:
            print(f"{name}: no such container in project {paths.project}", file=sys.stderr)
            failed = 1
            continue
        if record.status == "running" and record.pid and Path(f"/proc/{record.pid}").exists():
            print(f"{name}: cannot remove a running container; stop it first", file=sys.stderr)
            failed = 1
            continue
        if args.volumes:
            for m in record.mounts:
                if m.anonymous and m.name:
                    remove_tree(Volumes(paths).paths.volumes / m.name)
        remove_tree(d)
        print(name)
    return failed


def cmd_shell(args: argparse.Namespace) -> int:
    from supervisor.tui import main as shell

    return shell(args)


def cmd_volume(args: argparse.Namespace) -> int:
    import msgspec

    from supervisor.container import list_records
    from supervisor.volumes import Volumes

    paths = _run_project(args)
    store = Volumes(paths)
    if args.volume_verb == "ls":
        names = store.names()
        if args.quiet:
            for n in names:
                print(store.display_name(n))
        else:
            print(f"{'DRIVER':<16}VOLUME NAME")
            for n in names:
                print(f"{'local':<16}{store.display_name(n)}")
        return 0
    if args.volume_verb == "inspect":
        records = [store.inspect(n) for n in args.names]
        print(msgspec.json.format(msgspec.json.encode(records), indent=4).decode())
        return 0
    records_in_use = list_records(paths)
    for n in args.names:
        store.remove(n, records_in_use, force=args.force)
        print(n)
    return 0


class _Verbs:
    """``_Verbs("supervisor.cli_api").cmd_ps``: a function that imports the module first."""

    def __init__(self, module: str) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Callable[[argparse.Namespace], int]:
        def run(args: argparse.Namespace) -> int:
            import importlib

            return int(getattr(importlib.import_module(self._module), name)(args))
        run.__name__ = name
        return run


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="supervise", description="Run and supervise a stack of Linux containers.")
    p.add_argument("-p", "--project", help="project name (default: [stack] name or the folder's)")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)

    c = sub.add_parser("config", help="validate a stack file and print the resolved stack")
    c.add_argument("file", nargs="?", help="the stack file (default: ./supervise.toml)")
    c.add_argument("--format", choices=["toml", "json"], default="toml")
    c.set_defaults(func=cmd_config)

    r = sub.add_parser("run", help="run a container", add_help=False)
    r.add_argument("--help", action="help", help="show this help and exit")
    r.add_argument("-d", "--detach", action="store_true",
                   help="in the project's supervisor (started if needed), in the background")
    r.add_argument("--rm", action="store_true", help="remove the container when it exits")
    r.add_argument("--name", help="container name (default: run-XXXXXX)")
    r.add_argument("-h", "--hostname")
    r.add_argument("-e", "--env", action="append", metavar="K=V")
    r.add_argument("--env-file", action="append", metavar="FILE")
    r.add_argument("-v", "--volume", action="append", metavar="SPEC")
    r.add_argument("--volumes-from", action="append", metavar="NAME[:ro]")
    r.add_argument("--tmpfs", action="append", metavar="PATH[:OPTS]")
    r.add_argument("-p", "--publish", action="append", metavar="[IP:][HOST:]PORT[/udp]")
    r.add_argument("--expose", action="append", metavar="PORT[/udp]")
    r.add_argument("--link", action="append", metavar="NAME[:ALIAS]")
    r.add_argument("--network", "--net", metavar="MODE",
                   help="bridge (the stack network, default), none, host or container:NAME")
    r.add_argument("--add-host", action="append", metavar="NAME:IP")
    r.add_argument("-w", "--workdir")
    r.add_argument("-u", "--user")
    r.add_argument("--entrypoint")
    r.add_argument("-m", "--memory")
    r.add_argument("--memory-swap")
    r.add_argument("--shm-size")
    r.add_argument("--cpus")
    r.add_argument("--pids-limit")
    r.add_argument("--init", action="store_true", help="run tini as PID 1")
    r.add_argument("--cap-add", action="append", metavar="CAP")
    r.add_argument("--cap-drop", action="append", metavar="CAP")
    r.add_argument("--read-only", action="store_true")
    r.add_argument("--ulimit", action="append", metavar="NAME=SOFT[:HARD]")
    r.add_argument("--restart", metavar="POLICY",
                   help="no, on-failure[:N], always, unless-stopped (with a supervisor)")
    r.add_argument("--stop-signal")
    r.add_argument("--stop-timeout", type=int, metavar="SECONDS")
    r.add_argument("-t", "--tty", action="store_true")
    r.add_argument("-i", "--interactive", action="store_true")
    r.add_argument("image", metavar="IMAGE|ROOTFS")
    r.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD")
    r.set_defaults(func=cmd_run)

    x = sub.add_parser("exec", help="run a command in a running container")
    x.add_argument("-e", "--env", action="append", metavar="K=V")
    x.add_argument("-u", "--user")
    x.add_argument("-w", "--workdir")
    x.add_argument("-t", "--tty", action="store_true")
    x.add_argument("-i", "--interactive", action="store_true")
    x.add_argument("name", metavar="NAME")
    x.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD")
    x.set_defaults(func=cmd_exec)

    rm = sub.add_parser("rm", help="remove containers")
    rm.add_argument("-f", "--force", action="store_true", help="stop running ones first")
    rm.add_argument("-v", "--volumes", action="store_true", help="also anonymous volumes")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.set_defaults(func=cmd_rm)

    up = sub.add_parser("up", help="start a stack and supervise it (also: supervise FILE)")
    up.add_argument("file", nargs="?", help="the stack file (default: ./supervise.toml)")
    up.add_argument("-d", "--detach", action="store_true", help="run in the background")
    up.add_argument("--wait", action="store_true",
                    help="detach, and return once every container is running/healthy")
    up.add_argument("--no-color", action="store_true")
    up.add_argument("--no-log-prefix", action="store_true")
    up.add_argument("--abort-on-container-exit", action="store_true")
    up.add_argument("--exit-code-from", metavar="NAME")
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop and remove the stack's containers")
    down.add_argument("file", nargs="?")
    down.add_argument("-v", "--volumes", action="store_true", help="and its volumes")
    down.set_defaults(func=cmd_down)

    serve = sub.add_parser("_serve")  # the detached supervisor (not for people)
    serve.add_argument("file", nargs="?")
    serve.set_defaults(func=cmd_serve)

    # The verbs' modules are imported when the verb runs, not to build the parser: a
    # command pays only for its own imports (`supervise logs` starts in ~50 ms).
    api = _Verbs("supervisor.cli_api")

    ps = sub.add_parser("ps", help="list containers")
    ps.add_argument("-a", "--all", action="store_true", help="include stopped ones")
    ps.add_argument("-q", "--quiet", action="store_true", help="names only")
    ps.add_argument("--filter", action="append", metavar="KEY=VALUE",
                    help="name=, status=, health=")
    ps.add_argument("--format", choices=["table", "json"], default="table")
    ps.set_defaults(func=api.cmd_ps)
    for verb, fn, text in (("start", api.cmd_start, "start stopped containers"),
                           ("pause", api.cmd_pause, "freeze containers"),
                           ("unpause", api.cmd_unpause, "thaw containers"),
                           ("wait", api.cmd_wait, "wait for containers to exit"),
                           ("inspect", api.cmd_inspect, "show containers as JSON")):
        vp = sub.add_parser(verb, help=text)
        vp.add_argument("names", nargs="+", metavar="NAME")
        vp.set_defaults(func=fn)
    for verb, fn in (("stop", api.cmd_stop), ("restart", api.cmd_restart)):
        vp = sub.add_parser(verb, help=f"{verb} containers")
        vp.add_argument("-t", "--time", type=int, metavar="SECONDS",
                        help="grace period before SIGKILL (default: stop_grace_period)")
        vp.add_argument("names", nargs="+", metavar="NAME")
        vp.set_defaults(func=fn)
    k = sub.add_parser("kill", help="send a signal to containers")
    k.add_argument("-s", "--signal", default="SIGKILL")
    k.add_argument("names", nargs="+", metavar="NAME")
    k.set_defaults(func=api.cmd_kill)
    for verb, fn, text in (("top", api.cmd_top, "processes of a container"),
                           ("port", api.cmd_port, "published ports of a container"),
                           ("attach", api.cmd_attach, "follow a container's output")):
        vp = sub.add_parser(verb, help=text)
        vp.add_argument("name", metavar="NAME")
        vp.set_defaults(func=fn)
    st = sub.add_parser("stats", help="live resource usage")
    st.add_argument("--no-stream", action="store_true")
    st.add_argument("--format", choices=["table", "json"], default="table")
    st.add_argument("names", nargs="*", metavar="NAME")
    st.set_defaults(func=api.cmd_stats)
    upd = sub.add_parser("update", help="change limits of running containers")
    upd.add_argument("-m", "--memory")
    upd.add_argument("--memory-swap")
    upd.add_argument("--cpus")
    upd.add_argument("--pids-limit")
    upd.add_argument("--restart")
    upd.add_argument("names", nargs="+", metavar="NAME")
    upd.set_defaults(func=api.cmd_update)
    cp = sub.add_parser("cp", help="copy files between a container and here")
    cp.add_argument("src", metavar="SRC")
    cp.add_argument("dst", metavar="DEST")
    cp.set_defaults(func=api.cmd_cp)
    lg = sub.add_parser("logs", help="the stack's logs, from the log store")
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("-n", "--tail", metavar="N", help="the last N lines (or 'all')")
    lg.add_argument("--since", metavar="T", help="10m, RFC 3339 or Unix seconds")
    lg.add_argument("--until", metavar="T")
    lg.add_argument("-t", "--timestamps", action="store_true")
    lg.add_argument("--grep", metavar="REGEX")
    lg.add_argument("--source", metavar="S", help="stdout, stderr, file or file:/PATH")
    lg.add_argument("--json", action="store_true", help="one JSON record per line")
    lg.add_argument("--no-color", action="store_true")
    lg.add_argument("--no-log-prefix", action="store_true")
    lg.add_argument("names", nargs="*", metavar="NAME")
    lg.set_defaults(func=_Verbs("supervisor.cli_logs").cmd_logs)
    ev = sub.add_parser("events", help="stream the stack's events")
    ev.add_argument("--since")
    ev.add_argument("--until")
    ev.add_argument("--filter", action="append", metavar="container=NAME")
    ev.add_argument("--format", choices=["text", "json"], default="text")
    ev.set_defaults(func=api.cmd_events)

    sh = sub.add_parser("shell", help="a live view of the stack with a command line")
    sh.add_argument("--plain", action="store_true",
                    help="a line-oriented REPL (also when stdin or stdout is not a terminal)")
    sh.set_defaults(func=cmd_shell)

    v = sub.add_parser("volume", help="list, inspect and remove volumes")
    vsub = v.add_subparsers(dest="volume_verb", metavar="COMMAND", parser_class=_Parser,
                            required=True)
    vls = vsub.add_parser("ls", help="list volumes")
    vls.add_argument("-q", "--quiet", action="store_true")
    vin = vsub.add_parser("inspect", help="show a volume as JSON")
    vin.add_argument("names", nargs="+", metavar="VOLUME")
    vrm = vsub.add_parser("rm", help="remove volumes not in use")
    vrm.add_argument("-f", "--force", action="store_true")
    vrm.add_argument("names", nargs="+", metavar="VOLUME")
    v.set_defaults(func=cmd_volume)

    from supervisor import cli_images

    cli_images.register(sub, _Parser)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # `supervise stack.toml` is `supervise up stack.toml`, as the product promises.
    first = next((i for i, a in enumerate(argv) if not a.startswith("-")
                  and (i == 0 or argv[i - 1] not in ("-p", "--project"))), None)
    if first is not None and argv[first].endswith(".toml"):
        argv.insert(first, "up")
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args))
    except SupervisorError as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BaseExceptionGroup as group:
        # trio's nurseries group what their tasks raised: one of ours is still one line.
        error = _first_supervisor_error(group)
        if error is None:
            raise
        print(str(error), file=sys.stderr)
        return error.exit_code


def _first_supervisor_error(group: BaseExceptionGroup[BaseException]) -> SupervisorError | None:
    for exc in group.exceptions:
        if isinstance(exc, SupervisorError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_supervisor_error(exc)
            if found is not None:
                return found
    return None
