"""The `supervise` command line.  The only module (with the TUI) that prints to people."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from supervisor.errors import SupervisorError, UsageError

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
    from supervisor.paths import NAME_RE

    project: str = args.project or os.environ.get("SUPERVISE_PROJECT") or "default"
    if not NAME_RE.fullmatch(project):
        raise UsageError(f"-p/--project: expected a name such as 'web_1', got {project!r}")
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
    """`run` flags -> the stack file's keys, so both go through one validation."""
    from supervisor import config

    raw: dict[str, object] = {}
    target = args.image
    if target.startswith((".", "/")) or "/" in target:
        raw["rootfs"] = str(Path(target).resolve())
    else:
        raw["image"] = target
    if args.command:
        raw["command"] = list(args.command)
    if args.entrypoint is not None:
        raw["entrypoint"] = [args.entrypoint] if args.entrypoint else []
    simple = {"hostname": args.hostname, "working_dir": args.workdir, "user": args.user,
              "stop_signal": args.stop_signal}
    raw.update({k: v for k, v in simple.items() if v is not None})
    if args.stop_timeout is not None:
        raw["stop_grace_period"] = f"{args.stop_timeout}s"
    for flag, key, value in (("--memory", "mem_limit", args.memory),
                             ("--memory-swap", "memswap_limit", args.memory_swap),
                             ("--shm-size", "shm_size", args.shm_size)):
        if value is not None:
            raw[key] = -1 if value == "-1" else _flag(flag, config.parse_size, value)
    if args.cpus is not None:
        raw["cpus"] = _flag("--cpus", float, args.cpus)
    if args.pids_limit is not None:
        raw["pids_limit"] = _flag("--pids-limit", int, args.pids_limit)
    if args.env:
        raw["environment"] = list(args.env)
    if args.env_file:
        raw["env_file"] = [str(Path(f).resolve()) for f in args.env_file]
    if args.volume:
        raw["volumes"] = list(args.volume)
    if args.volumes_from:
        raw["volumes_from"] = list(args.volumes_from)
    if args.tmpfs:
        raw["tmpfs"] = list(args.tmpfs)
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


def cmd_run(args: argparse.Namespace) -> int:
    import secrets

    import trio

    from supervisor import config
    from supervisor.foreground import run_container

    paths = _paths(args)
    name = args.name or f"run-{secrets.token_hex(3)}"
    cfg = config.container_from_mapping(name, _run_mapping(args), where="supervise run")
    return trio.run(lambda: run_container(cfg, paths, remove=args.rm,
                                          interactive=args.interactive))


def cmd_exec(args: argparse.Namespace) -> int:
    import trio

    from supervisor.foreground import exec_in_container

    paths = _paths(args)
    env = {}
    for item in args.env or []:
        key, sep, value = item.partition("=")
        if not sep:
            value = os.environ.get(key, "")
        env[key] = value
    if not args.command:
        raise UsageError("supervise exec: expected a command after the container name")
    return trio.run(lambda: exec_in_container(
        paths, args.name, list(args.command), env=env, user=args.user, workdir=args.workdir,
        interactive=args.interactive, tty=args.tty))


def cmd_rm(args: argparse.Namespace) -> int:
    from supervisor.container import load_record
    from supervisor.volumes import Volumes, remove_tree

    paths = _paths(args)
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


def cmd_volume(args: argparse.Namespace) -> int:
    import msgspec

    from supervisor.container import list_records
    from supervisor.volumes import Volumes

    paths = _paths(args)
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


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="supervise", description="Run and supervise a stack of Linux containers.")
    p.add_argument("-p", "--project", help="project name (default: [stack] name or the folder's)")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)

    c = sub.add_parser("config", help="validate a stack file and print the resolved stack")
    c.add_argument("file", nargs="?", help="the stack file (default: ./supervise.toml)")
    c.add_argument("--format", choices=["toml", "json"], default="toml")
    c.set_defaults(func=cmd_config)

    r = sub.add_parser("run", help="run one container in the foreground", add_help=False)
    r.add_argument("--help", action="help", help="show this help and exit")
    r.add_argument("--rm", action="store_true", help="remove the container when it exits")
    r.add_argument("--name", help="container name (default: run-XXXXXX)")
    r.add_argument("-h", "--hostname")
    r.add_argument("-e", "--env", action="append", metavar="K=V")
    r.add_argument("--env-file", action="append", metavar="FILE")
    r.add_argument("-v", "--volume", action="append", metavar="SPEC")
    r.add_argument("--volumes-from", action="append", metavar="NAME[:ro]")
    r.add_argument("--tmpfs", action="append", metavar="PATH[:OPTS]")
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

    rm = sub.add_parser("rm", help="remove stopped containers")
    rm.add_argument("-v", "--volumes", action="store_true", help="also anonymous volumes")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.set_defaults(func=cmd_rm)

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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
