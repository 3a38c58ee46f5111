"""The control API: Docker-Engine-like paths over the project's api.sock.

Every handler turns our errors into a 4xx with a one-line `{"message": ...}`: a
`ContainerError` naming a missing container is 404, a conflict (running, not running) 409,
bad input 400.  Streams (events, stats, exec and attach output) are NDJSON.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
import trio

from logging_bus import query as log_query
from logging_bus.errors import LogBusError
from logging_bus.filters import Pipeline
from logging_bus.record import LogLine
from supervisor import __version__, api_views, config, fdio
from supervisor.errors import ContainerError, SupervisorError
from supervisor.httpserver import HTTPError, Request, Response, Router, Stream, Upgrade
from supervisor.protocol import (
    ExecRequest,
    ExitStatus,
    OutputFrame,
    StatsView,
    UpdateRequest,
)
from supervisor.runtime import ContainerProcess
from supervisor.service import Chunk, Service
from supervisor.stack import Stack
from supervisor.units import parse_signal

NDJSON = "application/x-ndjson"
RAW_CHUNK = 1 << 20  # bytes per chunk of a raw logs stream


@dataclass
class ExecState:
    """Docker's exec instance: created, started once, then its exit code is kept."""

    container: str
    request: ExecRequest
    process: ContainerProcess | None = None
    exit_code: int | None = None
    running: bool = False
    pty_master: int | None = None
    done: trio.Event = field(default_factory=trio.Event)


class Api:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.execs: dict[str, ExecState] = {}
        self._last_exit = 0  # of the last _exec_raw (the path check reads it at once)
        self.router = Router()
        self._routes()

    def service(self, name: str) -> Service:
        try:
            return self.stack.services[name]
        except KeyError:
            raise HTTPError(404, f"No such container: {name}") from None

    def _routes(self) -> None:
        r = self.router

        @r.route("GET", "/_ping")
        async def ping(req: Request) -> Response:
            return Response(body=b"OK", content_type="text/plain")

        @r.route("GET", "/version")
        async def version(req: Request) -> Response:
            return Response(body={"Version": __version__, "ApiVersion": "1.41",
                                  "Project": self.stack.paths.project, "Pid": os.getpid()})

        @r.route("GET", "/containers/json")
        async def ps(req: Request) -> Response:
            show_all = req.query_bool("all")
            filters = api_views.filters(req)
            rows = []
            for service in self.stack.services.values():
                row = api_views.summary(service)
                if not show_all and row.state.status not in ("running", "restarting",
                                                             "paused"):
                    continue
                if not api_views.matches(row, filters):
                    continue
                rows.append(row)
            return Response(body=sorted(rows, key=lambda s: s.name))

        @r.route("GET", "/containers/{name}/json")
        async def inspect_one(req: Request) -> Response:
            return Response(body=api_views.inspect(self.service(req.params["name"])))

        @r.route("POST", "/containers/create")
        async def create(req: Request) -> Response:
            name = req.query_str("name") or f"run-{secrets.token_hex(3)}"
            raw = req.json(dict[str, object])
            cfg = _container_config(name, raw)
            service = _call(lambda: self.stack.add_container(cfg, start=False))
            return Response(status=201, body={"Id": service.name, "Warnings": []})

        @r.route("POST", "/containers/{name}/start")
        async def start(req: Request) -> Response:
            service = self.service(req.params["name"])
            if service.status == "running":
                return Response(status=304)
            service.start()
            with trio.move_on_after(30):
                while service.status not in ("running", "exited") or (
                        service.status == "exited" and service.want_running):
                    await trio.sleep(0.005)
            if service.status == "exited" and service.container.record.error:
                raise HTTPError(409, service.container.record.error)
            return Response(status=204)

        @r.route("POST", "/containers/{name}/stop")
        async def stop(req: Request) -> Response:
            service = self.service(req.params["name"])
            if service.status not in ("running", "restarting"):
                return Response(status=304)
            await service.stop(_timeout(req))
            return Response(status=204)

        @r.route("POST", "/containers/{name}/restart")
        async def restart(req: Request) -> Response:
            service = self.service(req.params["name"])
            await service.restart(_timeout(req))
            return Response(status=204)

        @r.route("POST", "/containers/{name}/kill")
        async def kill(req: Request) -> Response:
            service = self.service(req.params["name"])
            sig = req.query_str("signal") or "SIGKILL"
            try:
                number = parse_signal(sig)
            except ValueError as e:
                raise HTTPError(400, f"signal: {e}") from None
            _call(lambda: service.kill(number), conflict=True)
            return Response(status=204)

        @r.route("POST", "/containers/{name}/pause")
        async def pause(req: Request) -> Response:
            _call(self.service(req.params["name"]).pause, conflict=True)
            return Response(status=204)

        @r.route("POST", "/containers/{name}/unpause")
        async def unpause(req: Request) -> Response:
            _call(self.service(req.params["name"]).unpause, conflict=True)
            return Response(status=204)

        @r.route("POST", "/containers/{name}/wait")
        async def wait(req: Request) -> Response:
            info = await self.service(req.params["name"]).wait_exit()
            return Response(body=ExitStatus(status_code=info.exit_code,
                                            oom_killed=info.oom_killed))

        @r.route("DELETE", "/containers/{name}")
        async def remove(req: Request) -> Response:
            name = req.params["name"]
            self.service(name)
            try:
                await self.stack.remove(name, force=req.query_bool("force"),
                                        volumes=req.query_bool("v"))
            except ContainerError as e:
                raise HTTPError(409, str(e)) from None
            return Response(status=204)

        @r.route("GET", "/containers/{name}/stats")
        async def stats(req: Request) -> Response | Stream:
            service = self.service(req.params["name"])
            if not req.query_bool("stream", True):
                first = api_views.stats(service, None)
                await trio.sleep(0.5)
                return Response(body=api_views.stats(service, first))
            return Stream(_ndjson(self._stats_stream(service)), content_type=NDJSON)

        @r.route("GET", "/containers/{name}/top")
        async def top(req: Request) -> Response:
            service = self.service(req.params["name"])
            if service.status != "running":
                raise HTTPError(409, f"Container {service.name} is not running")
            cgroup = service.container.runtime.cgroups.open(service.container.record.cgroup)
            pids = cgroup.pids() if cgroup else []
            return Response(body=[row for pid in pids if (row := api_views.process_row(pid))])

        @r.route("GET", "/containers/{name}/port")
        async def port(req: Request) -> Response:
            return Response(body=api_views.port_lines(self.service(req.params["name"])))

        @r.route("POST", "/containers/{name}/update")
        async def update(req: Request) -> Response:
            service = self.service(req.params["name"])
            body = req.json(UpdateRequest)
            _call(lambda: api_views.update(service, body))
            return Response(body={"Warnings": []})

        @r.route("POST", "/containers/{name}/exec")
        async def exec_create(req: Request) -> Response:
            service = self.service(req.params["name"])
            body = req.json(ExecRequest)
            if not body.cmd:
                raise HTTPError(400, "cmd: expected a command, got []")
            if service.status != "running":
                raise HTTPError(409, f"Container {service.name} is not running")
            if service.paused:  # its cgroup is frozen: an exec would freeze with it
                raise HTTPError(409, f"Container {service.name} is paused, unpause the "
                                "container before exec")
            exec_id = secrets.token_hex(16)
            self.execs[exec_id] = ExecState(service.name, body)
            return Response(status=201, body={"Id": exec_id})

        @r.route("POST", "/exec/{id}/start")
        async def exec_start(req: Request) -> Response | Stream | Upgrade:
            state = self._exec(req.params["id"])
            if state.process is not None or state.exit_code is not None:
                raise HTTPError(409, f"exec {req.params['id']} has already run")
            if state.request.tty or state.request.stdin:
                return Upgrade(self._exec_interactive(state))
            return Stream(_ndjson(self._exec_stream(state)), content_type=NDJSON)

        @r.route("GET", "/exec/{id}/json")
        async def exec_inspect(req: Request) -> Response:
            state = self._exec(req.params["id"])
            return Response(body={"ID": req.params["id"], "Running": state.running,
                                  "ExitCode": state.exit_code,
                                  "ContainerName": state.container})

        @r.route("POST", "/exec/{id}/resize")
        async def exec_resize(req: Request) -> Response:
            state = self._exec(req.params["id"])
            h, w = req.query_int("h", 24), req.query_int("w", 80)
            if not (0 < h < 65536 and 0 < w < 65536):
                raise HTTPError(400, f"h, w: expected a terminal size, got {h}x{w}")
            if state.pty_master is not None:
                try:
                    _resize(state.pty_master, h, w)
                except OSError as e:
                    raise HTTPError(409, f"exec {req.params['id']}: {e.strerror}") from None
            return Response(status=200, body={})

        @r.route("POST", "/containers/{name}/attach")
        async def attach(req: Request) -> Stream | Upgrade:
            """Live output (NDJSON frames; the last carries the exit code).  `start=1` starts
            the container once subscribed, so `run` misses nothing; an Upgrade request
            makes the connection the container's raw terminal (`run -it`)."""
            service = self.service(req.params["name"])
            send, receive = trio.open_memory_channel[Chunk](1024)
            service.attachers.add(send)
            if req.query_bool("start"):
                service.start()
            if req.headers.get("upgrade"):
                return Upgrade(self._attach_raw(service, send, receive))
            return Stream(_ndjson(self._attach_stream(service, send, receive)),
                          content_type=NDJSON)

        @r.route("GET", "/containers/{name}/archive")
        async def archive_get(req: Request) -> Stream:
            service = self.service(req.params["name"])
            path = _container_path(req)
            await self._check_path(service, path)
            parent, base = os.path.split(path.rstrip("/")) if path != "/" else ("/", ".")
            argv = ["tar", "cf", "-", "-C", parent or "/", base]
            return Stream(self._exec_raw(service, argv, None),
                          content_type="application/x-tar")

        @r.route("PUT", "/containers/{name}/archive")
        async def archive_put(req: Request) -> Response:
            service = self.service(req.params["name"])
            path = _container_path(req)
            async for _ in self._exec_raw(service, ["tar", "xf", "-", "-C", path], req.body,
                                          check=True):
                pass
            return Response(status=200, body={})

        @r.route("GET", "/containers/{name}/logs")
        async def logs_one(req: Request) -> Stream:
            name = req.params["name"]
            self.service(name)
            return self._logs(req, [name])

        @r.route("GET", "/logs")
        async def logs_all(req: Request) -> Stream:
            """The whole stack's logs, or those of `container=NAME` (repeated)."""
            return self._logs(req, req.query_list("container"))

        @r.route("GET", "/events")
        async def events(req: Request) -> Stream:
            since = _float(req, "since")
            until = _float(req, "until")
            filters = api_views.filters(req)
            names = set(filters.get("container", []) + filters.get("name", []))

            async def gen() -> AsyncIterator[bytes]:
                async for event in self.stack.events.subscribe(since, until):
                    if names and event.container not in names:
                        continue
                    yield msgspec.json.encode(event) + b"\n"

            return Stream(gen(), content_type=NDJSON)

        @r.route("POST", "/stack/up")
        async def stack_up(req: Request) -> Response:
            # The client resolved the file (its ${VAR}s, its .env): we get the Stack itself.
            new = req.json(config.Stack)
            if new.project != self.stack.paths.project:
                raise HTTPError(400, f"project: this supervisor runs {self.stack.paths.project!r}"
                                f", got {new.project!r}")
            try:
                changed = await self.stack.apply(new)
            except SupervisorError as e:
                raise HTTPError(400, str(e)) from None
            return Response(body={"recreated": changed})

        @r.route("POST", "/stack/down")
        async def stack_down(req: Request) -> Response:
            self.stack.down_volumes = req.query_bool("v")
            self.stack.remove_on_shutdown = True
            self.stack.shutdown()
            return Response(status=202, body={})

    # -- helpers that need the stack ------------------------------------------------------

    def _logs(self, req: Request, containers: list[str]) -> Stream:
        """Docker's logs query (tail, since, until, follow, stdout/stderr) plus ours (grep,
        source=file); NDJSON `LogLine`s, or with `raw=1` the bytes as written."""
        store = self.stack.logs
        query = _log_query(req, containers)
        try:
            query.pattern()
        except LogBusError as e:
            raise HTTPError(400, str(e)) from None
        if req.query_bool("raw"):
            if not query.plain:
                async def raw_records() -> AsyncIterator[bytes]:
                    async for record in log_query.records(store, query):
                        yield record.raw
                return Stream(raw_records(), content_type="application/octet-stream")
            # Whole blocks joined into ~1 MiB chunks, history and live alike: the HTTP
            # framing and the sends cost per chunk, and there is no work per line.
            return Stream(log_query.raw_bytes(store, query, RAW_CHUNK),
                          content_type="application/octet-stream")

        # The stack's filters, as the outputs see the lines: fields added, drops dropped.
        pipeline = Pipeline({name: s.container.cfg.logs.filters
                             for name, s in self.stack.services.items()},
                            self.stack.config.stack.logs.filters)

        async def lines() -> AsyncIterator[bytes]:
            encoder = msgspec.json.Encoder()
            batch: list[bytes] = []
            async for record in log_query.records(store, query):
                if pipeline.empty:
                    batch.append(encoder.encode(LogLine.of(record)) + b"\n")
                else:
                    batch += [encoder.encode(e) + b"\n" for e in pipeline.feed([record])]
                # History goes out 256 lines a chunk; a follower gets each line at once.
                if batch and (query.follow or len(batch) >= 256):
                    yield b"".join(batch)
                    batch = []
            batch += [encoder.encode(e) + b"\n" for e in pipeline.flush(None)]
            if batch:
                yield b"".join(batch)

        return Stream(lines(), content_type=NDJSON)

    def _exec(self, exec_id: str) -> ExecState:
        try:
            return self.execs[exec_id]
        except KeyError:
            raise HTTPError(404, f"No such exec instance: {exec_id}") from None

    async def _stats_stream(self, service: Service) -> AsyncIterator[StatsView]:
        previous = None
        while service.status == "running":
            current = api_views.stats(service, previous)
            yield current
            previous = current
            await trio.sleep(1)

    async def _attach_stream(self, service: Service, send: trio.MemorySendChannel[Chunk],
                             receive: trio.MemoryReceiveChannel[Chunk],
                             ) -> AsyncIterator[OutputFrame]:
        try:
            async with receive:
                async for stream, data, code in receive:
                    if code is not None:
                        yield OutputFrame(exit_code=code)
                        return
                    yield OutputFrame(stream=stream, data=data.decode(errors="replace"))
        finally:
            service.attachers.discard(send)

    def _attach_raw(self, service: Service, send: trio.MemorySendChannel[Chunk],
                    receive: trio.MemoryReceiveChannel[Chunk],
                    ) -> Callable[[trio.abc.Stream, Request], Awaitable[None]]:
        async def handler(stream: trio.abc.Stream, req: Request) -> None:
            async def typing() -> None:
                while data := await stream.receive_some(65536):
                    if not await service.write_stdin(bytes(data)):
                        break
                service.close_stdin()

            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(typing)
                    async with receive:
                        async for _stream, data, code in receive:
                            if code is not None:
                                break
                            await stream.send_all(data)
                    nursery.cancel_scope.cancel()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                service.attachers.discard(send)

        return handler

    async def _exec_stream(self, state: ExecState) -> AsyncIterator[OutputFrame]:
        service = self.service(state.container)
        req = state.request
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            state.process = await service.container.exec(
                list(req.cmd), stdin=devnull, stdout=out_w, stderr=err_w,
                env=_env_list(req.env), user=req.user, workdir=req.workdir)
        except ContainerError as e:
            for fd in (out_r, err_r):
                os.close(fd)
            state.exit_code = e.exit_code
            state.done.set()
            yield OutputFrame(stream="stderr", data=f"{e}\n")
            yield OutputFrame(exit_code=e.exit_code)
            return
        finally:
            for fd in (out_w, err_w, devnull):
                os.close(fd)
        state.running = True
        send, receive = trio.open_memory_channel[OutputFrame](64)
        try:
            async with trio.open_nursery() as nursery:
                for fd, stream in ((out_r, "stdout"), (err_r, "stderr")):
                    nursery.start_soon(_read_frames, fd, stream, send.clone())
                send.close()
                async with receive:
                    async for frame in receive:
                        yield frame
            state.exit_code = await state.process.wait()
            state.running = False
            state.done.set()
            yield OutputFrame(exit_code=state.exit_code)
        finally:
            if state.exit_code is None:  # the client went away: end the process too
                state.process.send_signal(signal.SIGKILL)
                with trio.CancelScope(shield=True):
                    state.exit_code = await state.process.wait()
                state.running = False
                state.done.set()

    def _exec_interactive(self, state: ExecState) -> Callable[[trio.abc.Stream, Request],
                                                              Awaitable[None]]:
        """`exec -it`: the hijacked connection becomes the process's terminal (or pipes)."""

        async def handler(stream: trio.abc.Stream, req: Request) -> None:
            service = self.service(state.container)
            ask = state.request
            if ask.tty:
                master, slave = os.openpty()
                os.set_inheritable(master, False)
                state.pty_master = master
                stdio, theirs, ours = [slave, slave, slave], [slave], [master]
                ours_in = ours_out = master
            else:
                in_r, in_w = os.pipe2(os.O_CLOEXEC)
                out_r, out_w = os.pipe2(os.O_CLOEXEC)
                stdio, theirs, ours = [in_r, out_w, out_w], [in_r, out_w], [in_w, out_r]
                ours_in, ours_out = in_w, out_r
            fds = fdio.FdSet(ours)
            try:
                state.process = await service.container.exec(
                    list(ask.cmd), stdin=stdio[0], stdout=stdio[1], stderr=stdio[2],
                    env=_env_list(ask.env), user=ask.user, workdir=ask.workdir, tty=ask.tty)
            except ContainerError as e:
                state.exit_code = e.exit_code
                state.done.set()
                fds.close_all()
                await stream.send_all(f"{e}\r\n".encode())
                return
            finally:
                for fd in theirs:
                    os.close(fd)
            state.running = True
            process = state.process
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_fd_to_stream, ours_out, stream, fds)
                    nursery.start_soon(_stream_to_fd, stream, ours_in,
                                       fds if ours_in != ours_out else None)
                    state.exit_code = await process.wait()
                    state.running = False
                    nursery.cancel_scope.deadline = trio.current_time() + 0.5
            finally:
                if state.exit_code is None:
                    process.send_signal(signal.SIGKILL)
                    with trio.CancelScope(shield=True):
                        state.exit_code = await process.wait()
                state.running = False
                state.pty_master = None
                state.done.set()
                fds.close_all()

        return handler

    async def _check_path(self, service: Service, path: str) -> None:
        """404 before a tar stream starts, when the path is missing or tar is."""
        if service.status != "running" or service.paused:
            raise HTTPError(409, f"Container {service.name} is not running")
        code = -1
        try:
            async for _ in self._exec_raw(service, ["sh", "-c", 'command -v tar >/dev/null '
                                                    '|| exit 3; test -e "$1"', "sh", path],
                                          None):
                pass
        except HTTPError as e:
            raise HTTPError(409, f"cp needs a shell and tar in the container: {e}") from None
        code = self._last_exit
        if code == 3 or code == 127:
            raise HTTPError(409, "cp needs tar in the container (as kubectl cp does)")
        if code != 0:
            raise HTTPError(404, f"Could not find the file {path} in container "
                            f"{service.name}")

    async def _exec_raw(self, service: Service, argv: list[str], stdin_data: bytes | None,
                        check: bool = False) -> AsyncIterator[bytes]:
        """Runs a helper command (tar) in the container, yielding its stdout."""
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            proc = await service.container.exec(argv, stdin=in_r, stdout=out_w, stderr=err_w)
        except ContainerError as e:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            raise HTTPError(409 if service.status != "running" else 500, str(e)) from None
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        errors: list[bytes] = []
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_write_all_and_close, in_w, stdin_data or b"")
                nursery.start_soon(_collect, err_r, errors)
                async for chunk in fdio.read_chunks(out_r):
                    yield chunk
            code = await proc.wait()
            self._last_exit = code
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                with trio.CancelScope(shield=True):
                    await proc.wait()
        if code != 0 and check:
            message = b"".join(errors).decode(errors="replace").strip().splitlines()
            raise HTTPError(400, message[-1] if message else f"tar exited with {code}")


# -- pure helpers -------------------------------------------------------------------------

def _call(fn, conflict: bool = False):  # type: ignore[no-untyped-def]
    """Our errors -> HTTP errors: one line, never a 500."""
    try:
        return fn()
    except ContainerError as e:
        raise HTTPError(409 if conflict or e.exit_code != 125 else 400, str(e)) from None
    except SupervisorError as e:
        raise HTTPError(400, str(e)) from None


def _log_query(req: Request, containers: list[str]) -> log_query.Query:
    source = req.query_str("source") or None
    stdout, stderr = req.query_bool("stdout", True), req.query_bool("stderr", True)
    if source is None and stdout != stderr:  # Docker's stdout=1 / stderr=1
        source = "stdout" if stdout else "stderr"
    if source is not None and source not in ("stdout", "stderr", "file") \
            and not source.startswith("file:/"):
        raise HTTPError(400, f"source: expected stdout, stderr, file or file:/PATH, got "
                        f"{source!r}")
    tail_text = req.query_str("tail", "all")
    tail = None
    if tail_text != "all":
        try:
            tail = int(tail_text)
            if tail < 0:
                raise ValueError
        except ValueError:
            raise HTTPError(400, f"tail: expected a number of lines or 'all', got "
                            f"{tail_text!r}") from None
    return log_query.Query(containers=frozenset(containers) if containers else None,
                           source=source, tail=tail, since=_float(req, "since"),
                           until=_float(req, "until"), grep=req.query_str("grep") or None,
                           follow=req.query_bool("follow"))


def _container_config(name: str, raw: dict[str, object]) -> config.Container:
    try:
        return config.container_from_mapping(name, raw, where="create")
    except SupervisorError as e:
        raise HTTPError(400, str(e)) from None


def _timeout(req: Request) -> float | None:
    if "t" not in req.query:
        return None
    t = req.query_int("t", 10)
    if t < 0:
        raise HTTPError(400, f"t: expected seconds >= 0, got {t}")
    return float(t)


def _float(req: Request, name: str) -> float | None:
    value = req.query_str(name)
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise HTTPError(400, f"{name}: expected Unix seconds, got {value!r}") from None


def _env_list(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def _container_path(req: Request) -> str:
    path = req.query_str("path")
    if not path or not path.startswith("/"):
        raise HTTPError(400, f"path: expected an absolute path in the container, got {path!r}")
    return path


def _resize(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def _ndjson(items: AsyncIterator[msgspec.Struct]) -> AsyncIterator[bytes]:
    encoder = msgspec.json.Encoder()
    async for item in items:
        yield encoder.encode(item) + b"\n"


async def _read_frames(fd: int, stream: str,
                       send: trio.MemorySendChannel[OutputFrame]) -> None:
    async with send:
        async for data in fdio.read_chunks(fd):
            await send.send(OutputFrame(stream=stream, data=data.decode(errors="replace")))


async def _collect(fd: int, into: list[bytes]) -> None:
    into.append(await fdio.read_all(fd))


async def _write_all_and_close(fd: int, data: bytes) -> None:
    try:
        await fdio.write_all(fd, data)
    finally:
        fdio.close(fd)


async def _fd_to_stream(fd: int, stream: trio.abc.Stream, fds: fdio.FdSet) -> None:
    # `fds` closes it once both directions are done: with a tty the writer shares it.
    async for data in fdio.read_chunks(fd, own=False):
        await stream.send_all(data)
    try:
        await stream.send_eof()  # type: ignore[attr-defined]
    except (AttributeError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


async def _stream_to_fd(stream: trio.abc.Stream, fd: int,
                        close_at_eof: fdio.FdSet | None) -> None:
    while True:
        try:
            data = await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            break
        if not data:
            break
        try:
            if not await fdio.write_all(fd, data):
                break
        except (trio.ClosedResourceError, trio.BusyResourceError):
            break
    if close_at_eof is not None:
        close_at_eof.close(fd)  # the process sees EOF on its stdin
