"""A project's supervisor: the root nursery in which every container is a task.

`Stack.run` takes the project's lock, cleans what a crashed supervisor of the same project
left (its cgroups and their processes; never volumes or records), reconciles the stack file
with the container records (a changed container is recreated, an unchanged one keeps its
writable layer), serves the control API, starts the services in dependency order and, on
shutdown, stops them in reverse order.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import trio

from logging_bus.store import LogStore
from supervisor import config, plan, restart
from supervisor.container import Container, list_records
from supervisor.errors import ContainerError, SupervisorError
from supervisor.events import EventBus
from supervisor.images import use as image_use
from supervisor.network import StackNet
from supervisor.paths import ProjectPaths
from supervisor.protocol import ContainerRecord
from supervisor.runtime import Runtime
from supervisor.service import DependencyFailed, Service
from supervisor.volumes import Volumes


class StackError(SupervisorError):
    """The project cannot be supervised (locked by another supervisor, bad state)."""


@contextlib.contextmanager
def project_lock(paths: ProjectPaths, *, shared: bool = False) -> Iterator[None]:
    """One supervisor per project: an exclusive flock in the runtime dir, plus a pid file.

    An in-process `supervise run` holds it shared: any number of those, but no supervisor
    meanwhile, whose leftover scan would take their containers for a crash's remains."""
    paths.run.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(paths.run / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = _read_pid(paths.run / "pid")
        if pid and Path(f"/proc/{pid}").exists():
            raise StackError(f"project {paths.project} already has a supervisor (pid {pid})"
                             ) from None
        raise StackError(f"project {paths.project} has containers running in the foreground "
                         "(supervise run): stop them first, or use another project (-p)"
                         ) from None
    if not shared:
        (paths.run / "pid").write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        if not shared:
            with contextlib.suppress(OSError):
                (paths.run / "pid").unlink()
        os.close(fd)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def clean_leftovers(runtime: Runtime, paths: ProjectPaths) -> list[str]:
    """After a kill -9 of a supervisor: its containers' processes and cgroups, nothing else.

    Records stay (marked exited, with the stopped-by-user mark kept), as do volumes and
    writable layers.  Returns one line per thing cleaned."""
    report = []
    prefix = paths.kernel_prefix
    for name in runtime.cgroups.list(prefix):
        cgroup = runtime.cgroups.open(name)
        if cgroup is None:
            continue
        pids = cgroup.pids()
        cgroup.kill_all()
        cgroup.remove()
        report.append(f"cgroup {name}" + (f" and its {len(pids)} process"
                                           f"{'es' if len(pids) != 1 else ''}" if pids else ""))
    for record in list_records(paths):
        if record.status == "running":
            record.status, record.pid = "exited", 0
            record.error = "the supervisor died while the container ran"
            record.exit_code = record.exit_code if record.exit_code is not None else 255
            tmp = paths.container(record.name) / "record.json.tmp"
            tmp.write_bytes(msgspec.json.encode(record))
            tmp.replace(paths.container(record.name) / "record.json")
            report.append(f"record of {record.name} (was running)")
    return report


class Stack:
    def __init__(self, stack: config.Stack, paths: ProjectPaths, runtime: Runtime,
                 logs: LogStore, events: EventBus | None = None,
                 notice: Callable[[str], None] = lambda line: None) -> None:
        self.config = stack
        self.paths = paths
        self.runtime = runtime
        self.logs = logs
        self.events = events or EventBus()
        self.notice = notice
        self.services: dict[str, Service] = {}
        self._nursery: trio.Nursery | None = None
        self._shutdown = trio.Event()
        self._stopping = False
        self.finished = trio.Event()  # set once `run` has stopped (and removed) everything
        self.network: StackNet | None = None  # the stack's network (daemon.py opens it)
        self.remove_on_shutdown = False  # `down`: remove the containers after stopping them
        self.down_volumes = False  # `down -v`: and their volumes

    # -- reconcile -----------------------------------------------------------------------

    def _records(self) -> dict[str, ContainerRecord]:
        return {r.name: r for r in list_records(self.paths)}

    def _container_for(self, cfg: config.Container,
                       records: dict[str, ContainerRecord]) -> Container:
        """Reuses the container when its config is unchanged, else recreates it (keeping
        its anonymous volumes, as Compose does)."""
        anonymous: dict[str, str] = {}
        if cfg.name in records:
            old = Container.load(self.runtime, self.paths, cfg.name)
            if not plan.changed(old.cfg, cfg, old_image=old.image.id if old.image else None,
                                new_image=image_use.current_id(cfg.image)):
                return old
            anonymous = old.anonymous_volumes()
            old.remove(volumes=False)
            self.events.publish("destroy", cfg.name, reason="config changed")
            self.notice(f"{cfg.name}: configuration changed, recreating")
        container = Container.create(self.runtime, self.paths, cfg, self._records(),
                                     anonymous)
        self.events.publish("create", cfg.name)
        return container

    # -- running -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        for line in await trio.to_thread.run_sync(clean_leftovers, self.runtime, self.paths):
            self.notice(f"cleaned leftover {line}")
            self.events.publish("leftover", self.paths.project, cleaned=line)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            records = self._records()
            if self.network is not None:
                self.network.reserve(list(self.config.containers.values()))
            for level in plan.start_order(self.config.containers):
                for name in level:
                    container = self._container_for(self.config.containers[name], records)
                    # unless-stopped: a container a user stopped stays stopped across
                    # supervisor restarts; `up` starts every other one, whatever its policy.
                    stay = (container.record.stopped_by_user
                            and container.cfg.restart.name == "unless-stopped")
                    self._add(container, start=not stay)
            # Containers made by `run`/`create` outside the stack file come back too, and
            # start as dockerd's would on its own start (always / unless-stopped).
            for name in sorted(set(records) - set(self.services)):
                try:
                    container = Container.load(self.runtime, self.paths, name)
                except (SupervisorError, msgspec.MsgspecError, ValueError, OSError) as e:
                    self.notice(f"{name}: its record cannot be read, left alone: {e}")
                    continue
                self._add(container, start=restart.should_start_on_boot(
                    container.cfg.restart, container.record.stopped_by_user))
            task_status.started()
            await self._shutdown.wait()
            await self.stop_all()
            if self.remove_on_shutdown:
                self.remove_everything()
            nursery.cancel_scope.cancel()
        self.finished.set()

    def _add(self, container: Container, start: bool = True) -> Service:
        assert self._nursery is not None
        container.network = self.network
        service = Service(container, self.events, self.logs, will_start=start)
        self.services[container.name] = service
        self._nursery.start_soon(self._supervise_scoped, service, start)
        return service

    async def _supervise_scoped(self, service: Service, start: bool) -> None:
        with service.scope:  # cancelled when the container is removed or replaced
            await self._supervise(service, start)

    async def _supervise(self, service: Service, start: bool) -> None:
        """Waits for the service's dependencies' conditions, then runs its loop."""
        cfg = service.container.cfg
        # depends_on as written, plus the implicit edges (links, volumes_from, a shared
        # network), which are required and wait for a start.
        deps = [(dep, condition, cfg.depends_on[dep].required if dep in cfg.depends_on
                 else True) for dep, condition in sorted(cfg.dependencies().items())]
        user_stops = service.user_stops
        try:
            for dep, condition, required in deps:
                other = self.services.get(dep)
                try:
                    if other is None:
                        raise DependencyFailed(f"dependency {dep} is not part of the stack")
                    await other.wait_for(condition)
                except DependencyFailed as e:
                    if required:
                        raise
                    self.notice(f"{service.name}: {e} (not required: starting anyway)")
        except DependencyFailed as e:
            service.failed = str(e)
            self.events.publish("die", service.name, error=str(e), exitCode=125)
            self.notice(f"{service.name}: {e}")
            service._set("exited")
            await service.run(start=False)
            return
        # Not if shutting down, nor if a user stopped it while it waited for dependencies.
        start = start and not self._stopping and service.user_stops == user_stops
        if start:
            service.start()  # clears a stopped-by-user mark, as `docker start` does
        await service.run(start=start)

    @property
    def shutting_down(self) -> bool:
        return self._shutdown.is_set()

    def shutdown(self) -> None:
        """Asks `run` to stop everything (Ctrl-C, SIGTERM, `down`)."""
        self._shutdown.set()

    async def stop_all(self, timeout: float | None = None) -> None:
        """Reverse dependency order, each level concurrently, each with its grace period."""
        self._stopping = True
        containers = {n: s.container.cfg for n, s in self.services.items()}
        for level in plan.stop_order(containers):
            async with trio.open_nursery() as nursery:
                for name in level:
                    nursery.start_soon(self._stop_one, self.services[name], timeout)

    async def _stop_one(self, service: Service, timeout: float | None) -> None:
        with contextlib.suppress(SupervisorError):
            await service.stop(timeout, by_user=False)

    def remove_everything(self) -> None:
        """`down [-v]`: containers (and anonymous volumes; with -v named ones too)."""
        named: set[str] = set()
        for name, service in list(self.services.items()):
            named |= {m.name for m in service.container.record.mounts
                      if m.type == "volume" and m.name and not m.anonymous}
            service.container.remove(volumes=True)
            del self.services[name]
            if self.network is not None:
                self.network.release(name)
            self.events.publish("destroy", name)
        if self.down_volumes:
            store = Volumes(self.paths)
            for volume in sorted(named):
                with contextlib.suppress(SupervisorError):
                    store.remove(volume, list_records(self.paths))

    def kill_all(self) -> None:
        """A second Ctrl-C: SIGKILL every container at once."""
        for service in self.services.values():
            service.want_running = False
            service.container.kill(9)

    # -- commands from the API -----------------------------------------------------------

    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise ContainerError(name, f"no such container in project {self.paths.project}",
                                 exit_code=1) from None

    def add_container(self, cfg: config.Container, *, start: bool) -> Service:
        """`run`/`create` joining a running stack."""
        if cfg.name in self.services:
            raise ContainerError(cfg.name, "the container name is already in use", exit_code=1)
        needs = [("volumes_from", vf.container) for vf in cfg.volumes_from]
        needs += [("links", link.container) for link in cfg.links]
        if cfg.network_mode.startswith("container:"):
            needs.append(("network_mode", cfg.network_mode[10:]))
        for key, other in needs:
            if other not in self.services:
                raise ContainerError(cfg.name, f"{key}: no container named {other!r}",
                                     exit_code=1)
        container = Container.create(self.runtime, self.paths, cfg, self._records())
        self.events.publish("create", cfg.name)
        return self._add(container, start=start)

    async def remove(self, name: str, *, force: bool = False, volumes: bool = False) -> None:
        service = self.service(name)
        if service.status in ("running", "restarting") or service.want_running:
            if not force:
                raise ContainerError(name, "cannot remove a running container; stop it "
                                     "first or use force", exit_code=1)
            await service.stop(0, by_user=False)
        service.container.remove(volumes=volumes)
        service.scope.cancel()
        del self.services[name]
        if self.network is not None:
            self.network.release(name)
        self.events.publish("destroy", name)

    async def apply(self, new: config.Stack) -> list[str]:
        """`up` with an edited stack file: recreates only the containers that changed."""
        changed = []
        records = self._records()
        if self.network is not None:
            self.network.reserve(list(new.containers.values()))
        for level in plan.start_order(new.containers):
            for name in level:
                cfg = new.containers[name]
                old = self.services.get(name)
                was = old.container.image if old is not None else None
                if old is not None and not plan.changed(
                        old.container.cfg, cfg, old_image=was.id if was else None,
                        new_image=image_use.current_id(cfg.image)):
                    if not old.want_running and not old.container.record.stopped_by_user:
                        old.start()
                    continue
                anonymous: dict[str, str] = {}
                if old is not None:
                    await old.stop(by_user=False)
                    anonymous = old.container.anonymous_volumes()
                    old.container.remove(volumes=False)
                    old.scope.cancel()
                    del self.services[name]
                    if self.network is not None:  # the new config publishes its own ports
                        self.network.unpublish(name)
                    self.events.publish("destroy", name, reason="config changed")
                    records.pop(name, None)
                changed.append(name)
                if old is None:
                    self._add(self._container_for(cfg, records))
                    continue
                container = Container.create(self.runtime, self.paths, cfg, self._records(),
                                             anonymous)
                self.events.publish("create", name)
                self._add(container)
        self.config = new
        return changed
