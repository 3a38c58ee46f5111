"""One container: its record, writable layer, volumes and cgroup, and one run at a time.

`Container.create` makes the record and the writable layer (they live until `remove`, as
Docker's); `start` asks the fork server for PID 1 and returns once the command has been
exec'd; `wait` reaps it, reads the OOM counter and removes the cgroup, so no process of the
container remains; `stop` is stop_signal, then SIGKILL after stop_grace_period.  A service's
restart loop (supervisor issue) calls start/wait again on the same Container.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import trio

from supervisor import config, fdio
from supervisor.capabilities import CAPABILITIES, effective_set
from supervisor.errors import ContainerError, SupervisorError
from supervisor.images import use as image_use
from supervisor.linux.cgroups import Cgroup, Limits, Stats
from supervisor.linux.init import ALL_NAMESPACES, CLONE_NEWNET, MASKED_PATHS, READONLY_PATHS
from supervisor.network import NetSetup, StackNet
from supervisor.paths import ProjectPaths
from supervisor.protocol import ContainerRecord, MountRecord
from supervisor.rootfs import host_base_layer
from supervisor.runtime import ContainerProcess, Runtime
from supervisor.units import ULIMITS
from supervisor.volumes import Volumes, remove_tree

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TINI_CANDIDATES = ("/usr/bin/tini-static", "/usr/bin/docker-init")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ExitInfo:
    exit_code: int
    oom_killed: bool = False


def load_record(path: Path) -> ContainerRecord:
    return msgspec.json.decode(path.read_bytes(), type=ContainerRecord)


def list_records(paths: ProjectPaths) -> list[ContainerRecord]:
    if not paths.containers.is_dir():
        return []
    out = []
    for d in sorted(paths.containers.iterdir()):
        try:
            out.append(load_record(d / "record.json"))
        except (OSError, msgspec.DecodeError):
            continue
    return out


def resolve_mounts(cfg: config.Container, volumes: Volumes,
                   peers: Mapping[str, ContainerRecord],
                   anonymous: Mapping[str, str] | None = None) -> list[MountRecord]:
    """The container's own volumes, then `volumes_from` (own targets win), then tmpfs."""
    own: list[MountRecord] = []
    for v in cfg.volumes:
        if v.type == "bind":
            assert v.source is not None
            os.makedirs(v.source, exist_ok=True) if not os.path.exists(v.source) else None
            own.append(MountRecord(type="bind", source=v.source, target=v.target,
                                   read_only=v.read_only))
        elif v.type == "volume":
            assert v.source is not None
            own.append(MountRecord(type="volume", source=str(volumes.ensure(v.source)),
                                   target=v.target, read_only=v.read_only, name=v.source))
        else:
            # A recreated container keeps its anonymous volume at the same path (Compose).
            reused = (anonymous or {}).get(v.target)
            if reused is not None:
                name, data = reused, volumes.ensure(reused)
            else:
                name, data = volumes.new_anonymous()
            own.append(MountRecord(type="volume", source=str(data), target=v.target,
                                   read_only=v.read_only, name=name, anonymous=True))
    targets = {m.target for m in own}
    inherited: list[MountRecord] = []
    for vf in cfg.volumes_from:
        peer = peers.get(vf.container)
        if peer is None:
            raise ContainerError(cfg.name, f"volumes_from: no container named {vf.container!r}")
        for m in peer.mounts:
            if m.type == "tmpfs" or m.target in targets:
                continue
            targets.add(m.target)
            inherited.append(msgspec.structs.replace(
                m, read_only=m.read_only or vf.read_only, anonymous=False))
    tmpfs = [MountRecord(type="tmpfs", source="", target=t.target) for t in cfg.tmpfs]
    return own + inherited + tmpfs


def _hosts_file(hostname: str, setup: NetSetup | None = None) -> str:
    """Docker's layout: localhost, the container's own address and name, then its links
    and extra_hosts."""
    own = setup.address if setup is not None and setup.address else "127.0.1.1"
    text = (f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{own}\t{hostname}\n")
    for ip, names in setup.hosts if setup is not None else []:
        text += f"{ip}\t{names}\n"
    return text


def _resolv_conf() -> str:
    """The host's resolver minus loopback servers (unreachable from the container), as
    Docker does."""
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        return ""
    keep = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#") and not (
        ln.split()[0] == "nameserver" and len(ln.split()) > 1 and (
            ln.split()[1].startswith("127.") or ln.split()[1] == "::1"))]
    return "\n".join(keep) + "\n" if keep else ""


def _host_resolv_conf() -> str:
    try:
        return Path("/etc/resolv.conf").read_text()
    except OSError:
        return ""


class Container:
    """A container of one project: created once, run many times, removed once."""

    def __init__(self, runtime: Runtime, paths: ProjectPaths, cfg: config.Container,
                 record: ContainerRecord) -> None:
        self.runtime = runtime
        self.paths = paths
        self.cfg = cfg
        self.record = record
        self.dir = paths.container(cfg.name)
        self.image = image_use.load(self.dir)  # what it took from its image, if any
        self.process: ContainerProcess | None = None
        self._cgroup: Cgroup | None = None
        self._exit: ExitInfo | None = None
        self._finished = trio.Event()
        self._finishing = False
        self.network: StackNet | None = None  # the stack's network, when there is one
        self._setup: NetSetup | None = None  # what the current run got from it

    @property
    def name(self) -> str:
        return self.cfg.name

    # -- records --------------------------------------------------------------------------

    @classmethod
    def create(cls, runtime: Runtime, paths: ProjectPaths, cfg: config.Container,
               peers: Mapping[str, ContainerRecord] | None = None,
               anonymous: Mapping[str, str] | None = None) -> Container:
        d = paths.container(cfg.name)
        if (d / "record.json").exists():
            raise ContainerError(
                cfg.name, f"the container name is already in use in project {paths.project} "
                f"(remove it with: supervise rm {cfg.name})")
        if cfg.rootfs is not None and not Path(cfg.rootfs).is_dir():
            raise ContainerError(cfg.name, f"rootfs {cfg.rootfs}: no such directory")
        image = image_use.for_container(cfg.name, cfg.image)
        if not (cfg.entrypoint or cfg.command or (image and image.has_command())):
            raise ContainerError(cfg.name, "no command specified")
        try:
            paths.ensure_private()
            for sub in ("upper", "work", "merged"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            mounts = resolve_mounts(cfg, Volumes(paths), peers or {}, anonymous)
            mounts += image_use.volume_mounts(image, mounts, cfg, Volumes(paths), anonymous)
            image_use.save(d, image)
        except OSError as e:
            remove_tree(d)
            raise ContainerError(cfg.name, f"create: {e.strerror}: {e.filename}") from e
        except SupervisorError:
            remove_tree(d)
            raise
        try:
            _log_dirs(cfg, mounts)
        except ContainerError:
            remove_tree(d)
            raise
        record = ContainerRecord(name=cfg.name, project=paths.project, created=now(),
                                 config=msgspec.Raw(msgspec.json.encode(cfg)), mounts=mounts,
                                 cgroup=paths.kernel_name(cfg.name))
        self = cls(runtime, paths, cfg, record)
        self.save()
        return self

    @classmethod
    def load(cls, runtime: Runtime, paths: ProjectPaths, name: str) -> Container:
        try:
            record = load_record(paths.container(name) / "record.json")
        except FileNotFoundError:
            raise ContainerError(name, f"no such container in project {paths.project}") from None
        cfg = msgspec.json.decode(record.config, type=config.Container)
        return cls(runtime, paths, cfg, record)

    def save(self) -> None:
        tmp = self.dir / "record.json.tmp"
        tmp.write_bytes(msgspec.json.encode(self.record))
        tmp.replace(self.dir / "record.json")

    def remove(self, *, volumes: bool = False) -> None:
        """Deletes the writable layer and the record (and anonymous volumes if asked)."""
        if self.process is not None and self.process.returncode is None:
            raise ContainerError(self.name, "cannot remove a running container; stop it first")
        if volumes:
            store = Volumes(self.paths)
            for m in self.record.mounts:
                if m.anonymous and m.name:
                    remove_tree(store.paths.volumes / m.name)
        remove_tree(self.dir)

    # -- one run --------------------------------------------------------------------------

    def _argv(self) -> list[str]:
        argv = image_use.argv(self.cfg.entrypoint, self.cfg.command, self.image)
        if self.cfg.init:
            return ["/dev/init", "--", *argv]
        return argv

    def _env(self, setup: NetSetup | None = None) -> dict[str, str]:
        env = {"PATH": DEFAULT_PATH, **image_use.env(self.image),
               "HOSTNAME": self.cfg.hostname or self.cfg.name}
        if self.cfg.tty:
            env["TERM"] = "xterm"
        if setup is not None:
            env.update(setup.env)  # link variables; the user's own environment wins
        env.update(self.cfg.environment)
        return env

    def _cwd(self) -> str:
        return self.cfg.working_dir or (self.image and self.image.working_dir) or "/"

    def _user(self) -> str | None:
        return self.cfg.user or (self.image.user if self.image else None)

    def _caps(self) -> list[int]:
        wanted = effective_set(self.cfg.cap_add, self.cfg.cap_drop)
        have = self.runtime.permitted_caps
        missing = [c for c in self.cfg.cap_add if c != "ALL" and not have >> CAPABILITIES[c] & 1]
        if missing:
            raise ContainerError(self.name, f"cap_add: supervise itself lacks {missing[0]}")
        return sorted(CAPABILITIES[c] for c in wanted if have >> CAPABILITIES[c] & 1)

    def _rlimits(self) -> list[tuple[int, int, int]]:
        return [(ULIMITS[name], u.soft, u.hard) for name, u in self.cfg.ulimits.items()]

    def _lower_and_mounts(self) -> tuple[list[str], list[dict[str, Any]]]:
        mounts: list[dict[str, Any]] = []
        if self.cfg.rootfs is not None:
            lower = [self.cfg.rootfs]
        elif self.image is not None:
            lower = list(self.image.lower)
            if self.image.host_base:  # built FROM host: on the host image's base and /usr
                lower.append(str(host_base_layer(self.paths.layers)))
                mounts.append({"type": "bind", "source": "/usr", "target": "/usr",
                               "read_only": True})
        else:
            lower = [str(host_base_layer(self.paths.layers))]
            mounts.append({"type": "bind", "source": "/usr", "target": "/usr",
                           "read_only": True})
        vols = sorted(self.record.mounts, key=lambda m: m.target.rstrip("/").count("/"))
        tmpfs_opts = {t.target: t for t in self.cfg.tmpfs}
        for m in vols:
            if m.type == "tmpfs":
                t = tmpfs_opts.get(m.target)
                opts = ["mode=1777" if t is None or t.mode is None else f"mode={t.mode:o}"]
                if t is not None and t.size is not None:
                    opts.append(f"size={t.size}")
                mounts.append({"type": "tmpfs", "target": m.target, "data": ",".join(opts)})
            else:
                mounts.append({"type": "bind", "source": m.source, "target": m.target,
                               "read_only": m.read_only})
        return lower, mounts

    def anonymous_volumes(self) -> dict[str, str]:
        """target -> volume name, for a replacement to keep them."""
        return {m.target: m.name for m in self.record.mounts if m.anonymous and m.name}

    def log_dirs(self) -> list[tuple[Path, Path, str, str]]:
        """(volume's host folder, host directory, container directory, file pattern) for
        each `logs.files`."""
        return _log_dirs(self.cfg, self.record.mounts)

    def write_etc(self, setup: NetSetup | None = None) -> None:
        """/etc/hostname, hosts and resolv.conf, regenerated at each start (as Docker's)
        straight into the writable layer while it is not mounted: no bind mounts to make.

        The container controls its layer, so nothing there is followed: a symlinked /etc or
        file is replaced, never written through."""
        hostname = self.cfg.hostname or self.cfg.name
        if setup is not None and setup.resolv is not None:
            resolv = setup.resolv
        elif setup is not None and setup.mode == "host":
            resolv = _host_resolv_conf()  # the host's network: its resolver as it is (podman)
        else:
            resolv = _resolv_conf()
        files = {"hostname": hostname + "\n", "hosts": _hosts_file(hostname, setup),
                 "resolv.conf": resolv}
        try:
            upper = os.open(self.dir / "upper", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as e:
            raise ContainerError(self.name, f"writable layer: {e.strerror}") from e
        try:
            etc = _open_dir_nofollow("etc", upper)
            try:
                for name, text in files.items():
                    _replace_file(name, text.encode(), etc)
            finally:
                os.close(etc)
        except OSError as e:
            raise ContainerError(self.name, f"/etc/{e.filename or ''}: {e.strerror}") from e
        finally:
            os.close(upper)

    def _init_binary(self) -> str | None:
        if not self.cfg.init:
            return None
        for path in TINI_CANDIDATES:
            if os.path.exists(path):
                return path
        raise ContainerError(self.name, "init = true needs tini-static on the host "
                             "(apt-get install tini)")

    def run_spec(self, cgroup: Cgroup, setup: NetSetup | None = None) -> dict[str, Any]:
        """The request the fork server turns into PID 1 (plain types only: marshal)."""
        lower, mounts = self._lower_and_mounts()
        net: dict[str, Any] = {}
        mode = setup.mode if setup is not None else "none"
        if setup is not None and mode == "bridge":
            # PID 1 waits on fds[4] for the veth, then sets eth0 up itself (init.py).
            net = {"sync": True, "net": {"address": setup.address, "prefixlen":
                                         setup.prefixlen, "gateway": setup.gateway}}
        elif mode in ("host", "container"):
            net = {"namespaces": ALL_NAMESPACES & ~CLONE_NEWNET}
            if mode == "container":
                net["netns_fd"] = 4  # the peer's namespace, joined by setns
        return net | {
            "op": "run", "cgroup_procs": cgroup.procs_files,
            "merged": str(self.dir / "merged"), "upper": str(self.dir / "upper"),
            "work": str(self.dir / "work"), "lower": lower, "mounts": mounts,
            "hostname": self.cfg.hostname or self.cfg.name, "read_only": self.cfg.read_only,
            "shm_size": self.cfg.shm_size, "init_binary": self._init_binary(),
            "masked": MASKED_PATHS, "readonly_paths": READONLY_PATHS,
            "argv": self._argv(), "env": self._env(setup), "cwd": self._cwd(),
            "user": self._user(), "caps": self._caps(), "last_cap": self.runtime.last_cap,
            "rlimits": self._rlimits(), "tty": self.cfg.tty, "no_new_privs": True,
        }

    def _limits(self) -> Limits:
        return Limits(memory=self.cfg.mem_limit, memswap=self.cfg.memswap_limit,
                      cpus=self.cfg.cpus, pids=self.cfg.pids_limit)

    async def start(self, stdin: int, stdout: int, stderr: int) -> ContainerProcess:
        """Starts one run; returns once the command is exec'd.  The fds are duplicated into
        the container, the caller keeps (and closes) its own."""
        if self.process is not None and self.process.returncode is None:
            raise ContainerError(self.name, "already running")
        try:
            cgroup = self.runtime.cgroups.create(self.record.cgroup)
        except SupervisorError as e:
            raise ContainerError(self.name, str(e)) from e
        try:
            setup = await self.network.prepare(self.cfg) if self.network is not None else None
            limits = self._limits()
            if limits != Limits() or not cgroup.fresh:
                cgroup.apply(limits)
            spec = self.run_spec(cgroup, setup)
        except SupervisorError as e:
            with contextlib.suppress(SupervisorError):
                cgroup.remove()
            if isinstance(e, ContainerError):
                raise
            raise ContainerError(self.name, str(e)) from e
        self._setup = setup
        try:
            self.write_etc(setup)
        except SupervisorError:
            cgroup.remove()
            raise
        self._cgroup, self._exit, self._finished = cgroup, None, trio.Event()
        self._finishing = False
        proc = await self._spawn_networked(spec, [stdin, stdout, stderr], setup)
        self.process = proc
        self.record.status, self.record.pid = "running", proc.pid
        self.record.started_at, self.record.exit_code = now(), None
        self.record.oom_killed, self.record.error = False, ""
        self.save()
        return proc

    async def _spawn_networked(self, spec: dict[str, Any], stdio: Sequence[int],
                               setup: NetSetup | None) -> ContainerProcess:
        """`_spawn`, with the network wired while PID 1 builds its root (bridge), or the
        namespace of the container whose network it shares handed over (container:)."""
        if setup is None or self.network is None or setup.mode in ("none", "host"):
            return await self._spawn(spec, stdio)
        network = self.network
        if setup.mode == "container":
            try:
                ns = os.open(f"/proc/{setup.netns_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise ContainerError(self.name, f"network_mode: {e.strerror}") from e
            # The PID may have ended and been reused since: only that container's namespace,
            # never the supervisor's own (the host's).
            if os.fstat(ns).st_ino != setup.netns_inode or \
                    os.fstat(ns).st_ino == os.stat("/proc/self/ns/net").st_ino:
                os.close(ns)
                raise ContainerError(self.name, "network_mode: the container whose network "
                                     "it shares is not running")
            try:
                proc = await self._spawn(spec, stdio, extra=[ns])
            finally:
                os.close(ns)
            await network.wire(setup, self.name, proc.pid)
            return proc
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        open_w = [sync_w]  # closed exactly once: a number closed twice may be someone else's

        async def wire(pid: int) -> None:
            try:
                await network.wire(setup, self.name, pid)
                with contextlib.suppress(BrokenPipeError):  # PID 1 died: its status says why
                    os.write(sync_w, b"g")
            finally:
                os.close(open_w.pop())  # EOF without "g": PID 1 gives up (exit 125)

        try:
            return await self._spawn(spec, stdio, wire, extra=[sync_r])
        finally:
            os.close(sync_r)
            if open_w:  # _spawn failed before `wire` ran
                os.close(open_w.pop())

    async def _spawn(self, spec: dict[str, Any], stdio: Sequence[int],
                     after: Callable[[int], Awaitable[None]] | None = None,
                     extra: Sequence[int] = ()) -> ContainerProcess:
        """PID 1 gets fds [stdin, stdout, stderr, status, *extra] (init.py's order)."""
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        try:
            proc = await self.runtime.spawn(spec, [*stdio, status_w, *extra])
        except SupervisorError as e:
            os.close(status_r)
            if self._cgroup is not None and spec["op"] == "run":
                with contextlib.suppress(SupervisorError):
                    self._cgroup.remove()
            raise ContainerError(self.name, str(e)) from e
        finally:
            os.close(status_w)
        try:
            wired: ContainerError | None = None
            if after is not None:
                try:
                    await after(proc.pid)
                except ContainerError as e:
                    wired = e  # PID 1 exits on its own: reaped below, then reported
            failure = await fdio.read_all(status_r)
            if wired is not None and not failure:  # PID 1's own failure explains more
                failure = f"125 {str(wired).partition(': ')[2]}".encode()
        except BaseException:  # cancelled: the new process must not outlive its owner
            proc.send_signal(9)
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                if spec["op"] == "run":
                    self.process = proc
                    await self._finish(proc)
                else:
                    await proc.wait()
            raise
        if failure:
            code_text, _, message = failure.decode(errors="replace").partition(" ")
            code = await proc.wait()
            if spec["op"] == "run":
                self.process = proc
                await self._finish(proc)
                self.record.error = message
                self.save()
            raise ContainerError(self.name, message, exit_code=int(code_text or code))
        return proc

    async def wait(self) -> ExitInfo:
        """Waits for the current run to end; afterwards nothing of it is left running."""
        if self.process is None:
            raise ContainerError(self.name, "not started")
        await self._finish(self.process)
        await self._finished.wait()
        assert self._exit is not None
        return self._exit

    async def _finish(self, proc: ContainerProcess) -> None:
        code = await proc.wait()
        if self.network is not None:  # at once: its PID may be reused from now on
            self.network.stopped(self.name)
        if self._finishing:  # another task is cleaning up this run: wait for it
            await self._finished.wait()
            return
        self._finishing = True
        oom = False
        if self._cgroup is not None:
            cgroup = self._cgroup
            # Only a memory limit makes a cgroup OOM kill (what Docker reports as OOMKilled).
            oom = self.cfg.mem_limit is not None and cgroup.oom_kills() > 0
            # PID 1's death SIGKILLed its pid namespace before it could be reaped, so the
            # cgroup is normally empty now; if not, kill and retry off the event loop.
            if not _remove_now(cgroup):
                with trio.CancelScope(shield=True):
                    try:
                        await trio.to_thread.run_sync(_empty_and_remove, cgroup)
                    except SupervisorError as e:  # left for the next start or leftover scan
                        self.record.error = str(e)
            self._cgroup = None
        self._exit = ExitInfo(code, oom)
        self.record.status, self.record.pid = "exited", 0
        self.record.exit_code, self.record.oom_killed = code, oom
        self.record.finished_at = now()
        self.save()
        self._finished.set()

    async def stop(self, timeout: float | None = None,
                   signal_number: int | None = None) -> ExitInfo:
        """stop_signal, then SIGKILL after the grace period (Docker's `stop`)."""
        proc = self.process
        if proc is None or proc.returncode is not None:
            return self._exit or ExitInfo(self.record.exit_code or 0, self.record.oom_killed)
        grace = self.cfg.stop_grace_period if timeout is None else timeout
        proc.send_signal(signal_number or self.cfg.stop_signal)
        with trio.move_on_after(grace):
            return await self.wait()
        proc.send_signal(9)
        return await self.wait()

    def running_pid(self) -> int | None:
        """PID 1's host pid while running, also when another process started it."""
        if self.process is not None:
            return self.process.pid if self.process.returncode is None else None
        pid = self.record.pid
        if self.record.status == "running" and pid and os.path.exists(f"/proc/{pid}"):
            return pid
        return None

    def stats(self) -> Stats | None:
        """Live cgroup figures (memory, CPU, pids) of a running container."""
        cgroup = self._cgroup or self.runtime.cgroups.open(self.record.cgroup)
        return cgroup.stats() if cgroup is not None else None

    def update_config(self, cfg: config.Container) -> None:
        """`update`: new limits apply at once to a running container, and to later runs."""
        cgroup = self._cgroup or self.runtime.cgroups.open(self.record.cgroup)
        old = self.cfg
        self.cfg = cfg
        try:
            if cgroup is not None:
                cgroup.apply(self._limits())
        except SupervisorError:
            self.cfg = old
            if cgroup is not None:
                cgroup.apply(self._limits())
            raise
        self.record.config = msgspec.Raw(msgspec.json.encode(cfg))
        self.save()

    def freeze(self, frozen: bool) -> None:
        cgroup = self._cgroup or self.runtime.cgroups.open(self.record.cgroup)
        if cgroup is None:
            raise ContainerError(self.name, "is not running")
        cgroup.freeze(frozen)

    def kill(self, signal_number: int = 9) -> None:
        if self.process is not None:
            self.process.send_signal(signal_number)

    async def exec(self, argv: list[str], *, stdin: int, stdout: int, stderr: int,
                   env: Mapping[str, str] | None = None, user: str | None = None,
                   workdir: str | None = None, tty: bool = False) -> ContainerProcess:
        """An extra process in the running container: its namespaces, root and cgroup."""
        target = self.running_pid()
        if target is None:
            raise ContainerError(self.name, "is not running")
        cgroup = self.runtime.cgroups.open(self.record.cgroup)
        full_env = self._env(self._setup)
        full_env.update(env or {})
        spec = {
            "op": "exec", "target_pid": target,
            "cgroup_procs": cgroup.procs_files if cgroup else [],
            "argv": argv, "env": full_env, "cwd": workdir or self._cwd(),
            "user": user if user is not None else self._user(), "caps": self._caps(),
            "last_cap": self.runtime.last_cap, "rlimits": self._rlimits(), "tty": tty,
            "no_new_privs": True,
        }
        return await self._spawn(spec, [stdin, stdout, stderr])


def _log_dirs(cfg: config.Container, mounts: Sequence[MountRecord],
              ) -> list[tuple[Path, Path, str, str]]:
    """Where each `logs.files` pattern lives on the host: inside the volume (own or from
    `volumes_from`) whose target contains it; the deepest such mount wins."""
    out = []
    for i, pattern in enumerate(cfg.logs.files):
        directory, name = os.path.split(pattern)
        best = None
        for m in mounts:
            if m.type == "tmpfs":
                continue
            target = m.target.rstrip("/") or "/"
            inside = directory == target or directory.startswith(target.rstrip("/") + "/")
            if inside and (best is None or len(target) > len(best.target)):
                best = m
        if best is None:
            raise ContainerError(cfg.name, f"logs.files[{i}]: {pattern} is not inside a "
                                 "volume of this container (files are tailed from the host "
                                 "side of a volume)")
        relative = directory[len(best.target.rstrip("/")):].lstrip("/")
        out.append((Path(best.source), Path(best.source) / relative, directory, name))
    return out


def _open_dir_nofollow(name: str, parent: int) -> int:
    """A real directory `name` under `parent` (made if missing; a symlink or a whiteout in
    its place is removed first)."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=parent)
            raise FileNotFoundError
    except FileNotFoundError:
        os.mkdir(name, 0o755, dir_fd=parent)
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)


def _replace_file(name: str, data: bytes, parent: int) -> None:
    try:
        if not stat.S_ISREG(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
            os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        pass
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644, dir_fd=parent)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _remove_now(cgroup: Cgroup) -> bool:
    """One quick try at removing an empty cgroup, without sleeping."""
    try:
        cgroup.remove(timeout=0)  # EBUSY if a process is still inside
    except SupervisorError:
        return False
    return True


def _empty_and_remove(cgroup: Cgroup) -> None:
    cgroup.kill_all()
    cgroup.remove()
