"""`supervise build`: a Containerfile, step by step, into the image store.

Every step's result is an image in the store (config + manifest, untagged), so a step is
cached as "parent image + instruction (+ copied content) -> resulting manifest": a rebuild
whose steps are unchanged only reads the cache, and a change reruns from that step on.

- RUN runs in a container on the layers so far (the usual runtime; a private network with
  outbound access through slirp4netns, made at the first RUN and shared by the build's RUN
  steps, as `docker build`'s default; or none); the container's writable layer, whiteouts
  included, becomes the next layer.
- COPY/ADD write through an overlay of the layers so far, mounted here for the copy, so
  symlinks in the destination resolve inside the image and parents are copied up as the
  kernel would; the upper dir becomes the layer.
- The other instructions change the config only (no layer).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from supervisor import config
from supervisor.config_net import StackNetwork
from supervisor.container import Container
from supervisor.errors import SupervisorError, UsageError
from supervisor.images import containerfile as cf
from supervisor.images import layers, oci
from supervisor.images.context import Context
from supervisor.images.reference import Reference
from supervisor.images.store import Image, Store, remove_tree
from supervisor.images.use import from_image
from supervisor.linux import init as kernel
from supervisor.network import StackNet, open_stack_network
from supervisor.paths import ProjectPaths
from supervisor.rootfs import host_base_layer
from supervisor.runtime import Runtime

DEFAULT_SHELL = ["/bin/sh", "-c"]
BUILD_PROJECT = "_build"  # no user project can be named so (they start with [a-z0-9])


class BuildError(SupervisorError):
    """A step failed; names the file and line."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class State:
    """The image so far."""

    image: Image | None  # None: FROM scratch/host, nothing yet
    config: oci.ImageConfig
    base: str | None = None  # "host" when built FROM host
    shell: list[str] = field(default_factory=lambda: list(DEFAULT_SHELL))
    cmd_from_parent: bool = True

    @property
    def key(self) -> str:
        if self.image is not None:
            return self.image.manifest_digest
        return self.base or "scratch"


def _find_file(context: Path, file: Path | None) -> Path:
    if file is not None:
        return file
    for name in ("Containerfile", "Dockerfile"):
        if (context / name).is_file():
            return context / name
    raise UsageError(f"supervise build: no Containerfile or Dockerfile in {context} "
                     "(name one with -f)")


class Builder:
    def __init__(self, store: Store, context_dir: Path, *, file: Path | None = None,
                 build_args: dict[str, str] | None = None, no_cache: bool = False,
                 out: Callable[[str], None] | None = None, network: bool = True) -> None:
        self.store = store
        self.context = Context(context_dir)
        self.file = _find_file(self.context.root, file)
        self.shown = os.path.relpath(self.file) if not str(self.file).startswith("..") \
            else str(self.file)
        self.build_args = dict(build_args or {})
        self.no_cache = no_cache
        self.out = out or (lambda line: print(line, flush=True))
        self.cached_steps = 0
        self.paths = ProjectPaths(BUILD_PROJECT, store.root / "build", store.root / "build/run")
        self._runtime: Runtime | None = None
        self._network = network
        self._net: StackNet | None = None
        self._exits = contextlib.AsyncExitStack()  # the network, once a RUN needs it
        self._token = secrets.token_hex(3)

    def where(self, ins: cf.Instruction) -> str:
        return f"{self.shown}:{ins.line}"

    async def build(self, tags: list[Reference]) -> Image:
        try:
            text = self.file.read_text()
        except OSError as e:
            raise UsageError(f"supervise build: {self.file}: {e.strerror}") from e
        instructions = cf.parse(text, self.shown)
        self.store.ensure()
        global_args: dict[str, str] = {}
        args: dict[str, str] = {}
        state: State | None = None
        total = len(instructions)
        try:
            for n, ins in enumerate(instructions, 1):
                self.out(f"STEP {n}/{total}: {ins.text}")
                if ins.name == "ARG":
                    self._arg(ins, global_args if state is None else args, global_args)
                    if state is None:
                        continue
                if ins.name == "FROM":
                    state = self._from(ins, global_args)
                    args = {}
                    continue
                assert state is not None
                state = await self._step(ins, state, args)
                assert state.image is not None
                self.out(f"--> {state.image.short_id}")
            assert state is not None
            image = state.image or self._commit_metadata(state, "FROM " + state.key)
        finally:
            # No cancel scope around this: the network's nursery was opened in this task's
            # scope stack below any new one, and must close as it opened.
            await self._exits.aclose()
            self._close_runtime()
        desc = self.store.manifest_descriptor(image)
        for ref in tags:
            self.store.tag(ref, desc)
            self.out(f"COMMIT {ref.familiar()}")
        self.out(f"--> {image.short_id}")
        for ref in tags:
            self.out(f"Successfully tagged {ref.familiar()}")
        self.out(image.id.removeprefix("sha256:"))
        return image

    # -- instructions --------------------------------------------------------------------

    def _arg(self, ins: cf.Instruction, scope: dict[str, str], global_args: dict[str, str],
             ) -> None:
        for word in cf.words(ins.args, scope | global_args):
            name, sep, default = word.partition("=")
            if name in self.build_args:
                scope[name] = self.build_args[name]
            elif sep:
                scope[name] = default
            elif name in global_args:
                scope[name] = global_args[name]

    def _from(self, ins: cf.Instruction, global_args: dict[str, str]) -> State:
        name = cf.expand(ins.args, global_args).split()[0]
        if name in ("scratch", "host"):
            cfg = oci.ImageConfig(created=now(), architecture=oci.architecture(),
                                  config=oci.ContainerConfig(
                                      Env=[f"PATH={DEFAULT_PATH}"] if name == "host" else None))
            return State(image=None, config=cfg, base=None if name == "scratch" else "host")
        try:
            image = self.store.resolve(name)
        except SupervisorError as e:
            raise BuildError(f"{self.where(ins)}: FROM {name}: {str(e).removeprefix('image ')}"
                             ) from e
        return State(image=image, config=image.config, base=image.base)

    async def _step(self, ins: cf.Instruction, state: State, args: dict[str, str]) -> State:
        env = {**args, **_env_dict(state.config.config.Env)}
        if ins.name == "SHELL":  # builder state, not image state: applies cached or not
            if not ins.exec_form:
                raise BuildError(f"{self.where(ins)}: SHELL: expected a JSON array such as "
                                 '["/bin/bash", "-c"]')
            state.shell = list(ins.exec_form)
        expanded = cf.expand(ins.args, env) if ins.name in cf.EXPANDED else ins.args
        extra = ""
        selected: list[tuple[Path, str]] = []
        if ins.name in ("COPY", "ADD"):
            srcs, _ = self._copy_operands(ins, env)
            selected = self.context.select(srcs, self.where(ins))
            extra = self.context.digest(selected)
        elif ins.name == "RUN":
            extra = repr(sorted(args.items()))
        flags = "".join(f"--{k}={v} " for k, v in sorted(ins.flags.items()))
        key = hashlib.sha256(f"{state.key}\n{ins.name} {flags}{expanded}\n{extra}".encode()
                             ).hexdigest()
        cached = None if self.no_cache else self.store.cache_get(key)
        if cached is not None:
            image = self.store.load_image(cached)
            self.cached_steps += 1
            self.out(f"--> Using cache {image.id.removeprefix('sha256:')}")
            return _next(state, image, ins)
        if ins.name == "RUN":
            image = await self._run(ins, state, args)
        elif ins.name in ("COPY", "ADD"):
            image = self._copy(ins, state, env, selected)
        else:
            image = self._metadata(ins, state, env)
        self.store.cache_put(key, image.manifest_digest)
        return _next(state, image, ins)

    def _metadata(self, ins: cf.Instruction, state: State, env: dict[str, str]) -> Image:
        c = state.config.config
        changes: dict[str, object] = {}
        where = self.where(ins)
        if ins.name == "ENV":
            current = _env_dict(c.Env)
            for k, v in cf.pairs(ins, env, where):
                current[k] = v
            changes["Env"] = [f"{k}={v}" for k, v in current.items()]
        elif ins.name == "LABEL":
            changes["Labels"] = {**(c.Labels or {}), **dict(cf.pairs(ins, env, where))}
        elif ins.name == "WORKDIR":
            path = cf.expand(ins.args, env).strip()
            changes["WorkingDir"] = os.path.normpath(os.path.join(c.WorkingDir or "/", path))
        elif ins.name == "USER":
            changes["User"] = cf.expand(ins.args, env).strip()
        elif ins.name in ("CMD", "ENTRYPOINT"):
            argv = ins.exec_form if ins.exec_form is not None else \
                [*state.shell, ins.args] if ins.args else []
            changes["Cmd" if ins.name == "CMD" else "Entrypoint"] = argv
            if ins.name == "ENTRYPOINT" and state.cmd_from_parent:
                changes["Cmd"] = None  # Docker: a new entrypoint drops an inherited CMD
        elif ins.name == "EXPOSE":
            ports = dict(c.ExposedPorts or {})
            for p in cf.words(ins.args, env):
                ports[p if "/" in p else f"{p}/tcp"] = {}
            changes["ExposedPorts"] = ports
        elif ins.name == "VOLUME":
            vols = dict(c.Volumes or {})
            for v in ins.exec_form or cf.words(ins.args, env):
                vols[v] = {}
            changes["Volumes"] = vols
        elif ins.name == "STOPSIGNAL":
            changes["StopSignal"] = cf.expand(ins.args, env).strip()
        elif ins.name in ("SHELL", "ARG"):
            pass  # builder state (`shell`, `args`), in the cache key by the instruction
        elif ins.name == "MAINTAINER":
            return self._commit_metadata(state, ins.text, author=ins.args)
        state.config = msgspec.structs.replace(
            state.config, config=msgspec.structs.replace(c, **changes))
        return self._commit_metadata(state, ins.text)

    def _commit_metadata(self, state: State, created_by: str, author: str | None = None,
                         ) -> Image:
        cfg = state.config
        history = [*cfg.history, oci.History(created=now(), created_by=created_by,
                                             empty_layer=True)]
        cfg = msgspec.structs.replace(cfg, created=now(), history=history,
                                      author=author or cfg.author)
        layer_list = list(state.image.manifest.layers) if state.image else []
        return self.store.write_image(layer_list, cfg, state.base)

    def _commit_layer(self, state: State, written: layers.Written, created_by: str) -> Image:
        desc = self.store.adopt_layer(written)
        cfg = state.config
        history = [*cfg.history, oci.History(created=now(), created_by=created_by)]
        rootfs = oci.RootFS(diff_ids=[*cfg.rootfs.diff_ids, written.diff_id])
        cfg = msgspec.structs.replace(cfg, created=now(), history=history, rootfs=rootfs)
        layer_list = list(state.image.manifest.layers) if state.image else []
        return self.store.write_image([*layer_list, desc], cfg, state.base)

    # -- RUN -----------------------------------------------------------------------------

    async def _run(self, ins: cf.Instruction, state: State, args: dict[str, str]) -> Image:
        image = state.image or self._commit_metadata(state, "FROM " + state.key)
        argv = ins.exec_form if ins.exec_form is not None else [*state.shell, ins.args]
        own_env = _env_dict(state.config.config.Env)
        env = [f"{k}={v}" for k, v in args.items() if k not in own_env]  # ENV wins over ARG
        name = f"b{self._token}-{ins.line}"
        cfg = config.container_from_mapping(
            name, {"image": image.manifest_digest, "entrypoint": [], "command": argv,
                   "environment": env}, where=self.where(ins))
        runtime = self._open_runtime()
        if self._network and self._net is None:
            self._net = await self._exits.enter_async_context(open_stack_network(
                self.paths, StackNetwork(), persist=False))
        container = Container.create(runtime, self.paths, cfg)
        container.network = self._net
        try:
            devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            try:
                sys.stdout.flush()
                await container.start(devnull, sys.stdout.fileno(), sys.stderr.fileno())
            except SupervisorError as e:
                raise BuildError(f"{self.where(ins)}: {ins.text}: {e}") from e
            finally:
                os.close(devnull)
            code = (await container.wait()).exit_code
            if code != 0:
                raise BuildError(f"{self.where(ins)}: {ins.name} exited with code {code}",
                                 exit_code=1)
            written = layers.write_layer(container.dir / "upper", self.store.tmp,
                                         exclude=layers.RUNTIME_FILES)
        finally:
            container.remove(volumes=True)
        return self._commit_layer(State(image=image, config=image.config, base=state.base),
                                  written, ins.text)

    def _open_runtime(self) -> Runtime:
        """One fork server for the build, started at its first RUN (a cached build has none)."""
        if self._runtime is None:
            runtime = Runtime()
            runtime.__enter__()
            self._runtime = runtime
        return self._runtime

    def _close_runtime(self) -> None:
        if self._runtime is not None:
            self._runtime.__exit__(None, None, None)
            self._runtime = None

    # -- COPY / ADD ----------------------------------------------------------------------

    def _copy_operands(self, ins: cf.Instruction, env: dict[str, str],
                       ) -> tuple[list[str], str]:
        items = ins.exec_form if ins.exec_form is not None else cf.words(ins.args, env)
        if len(items) < 2:
            raise BuildError(f"{self.where(ins)}: {ins.name}: expected SOURCE... DEST")
        for src in items[:-1]:
            if "://" in src:
                raise BuildError(f"{self.where(ins)}: {ins.name} from a URL is not supported")
        return items[:-1], items[-1]

    def _copy(self, ins: cf.Instruction, state: State, env: dict[str, str],
              selected: list[tuple[Path, str]]) -> Image:
        _, dest = self._copy_operands(ins, env)
        workdir = state.config.config.WorkingDir or "/"
        dest_path = dest if dest.startswith("/") else os.path.join(workdir, dest)
        into_dir = dest.endswith("/") or len(selected) > 1 or any(
            n == "" for _, n in selected)
        mode = _mode(ins.flags.get("chmod"), self.where(ins))
        lower: list[str] = []
        if state.image is not None:
            lower = from_image(self.store, state.image, state.key).lower
        if state.base == "host":
            lower.append(str(host_base_layer(self.paths.layers)))
        work = Path(tempfile.mkdtemp(prefix="copy-", dir=self.store.tmp))
        try:
            for sub in ("upper", "work", "merged", "empty"):
                (work / sub).mkdir()
            merged = str(work / "merged")
            kernel.mount_overlay(merged, lower or [str(work / "empty")], str(work / "upper"),
                                 str(work / "work"))
            try:
                owner = _owner(ins.flags.get("chown"), merged, self.where(ins))
                for path, name in selected:
                    self._copy_one(ins, merged, dest_path, into_dir, path, name, owner, mode)
            finally:
                kernel.libc.umount2(merged.encode(), 0)
            written = layers.write_layer(work / "upper", self.store.tmp)
        except OSError as e:
            raise BuildError(f"{self.where(ins)}: {ins.name}: {e.strerror}: {e.filename}"
                             ) from e
        except kernel.SetupError as e:  # the overlay mount, or a destination's symlinks
            raise BuildError(f"{self.where(ins)}: {ins.name}: {e}") from e
        finally:
            remove_tree(work)
        return self._commit_layer(state, written, ins.text)

    def _copy_one(self, ins: cf.Instruction, merged: str, dest: str, into_dir: bool,
                  src: Path, name: str, owner: tuple[int, int], mode: int | None) -> None:
        target = kernel.secure_join(merged, dest)
        if src.is_dir() and not src.is_symlink():  # a symlink is copied as one (Docker's)
            os.makedirs(target, exist_ok=True)
            entries = self.context.files_under(src)
            for path, rel in entries:
                _place(path, kernel.secure_join(merged, os.path.join(dest, rel)), owner, mode)
            return
        if ins.name == "ADD" and not src.is_symlink() and tarfile.is_tarfile(src):
            os.makedirs(target, exist_ok=True)
            try:
                with tarfile.open(src) as tar:
                    tar.extractall(target, numeric_owner=True, filter="tar")
            except tarfile.TarError as e:  # the filter's refusals (a path outside...) too
                raise BuildError(f"{self.where(ins)}: ADD {name or src.name}: {e}") from e
            return
        if into_dir or os.path.isdir(target):
            os.makedirs(target, exist_ok=True)
            target = kernel.secure_join(merged, os.path.join(dest, name))
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        _place(src, target, owner, mode)


def _place(src: Path, target: str, owner: tuple[int, int], mode: int | None) -> None:
    st = os.lstat(src)
    if os.path.islink(src):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
        os.symlink(os.readlink(src), target)
    elif src.is_dir():
        os.makedirs(target, exist_ok=True)
        shutil.copystat(src, target)
    else:
        if os.path.isdir(target) and not os.path.islink(target):
            remove_tree(Path(target))
        shutil.copy2(src, target, follow_symlinks=False)
    os.chown(target, *owner, follow_symlinks=False)
    if mode is not None and not os.path.islink(target):
        os.chmod(target, mode)
    elif not os.path.islink(target):
        os.chmod(target, st.st_mode & 0o7777)


def _mode(spec: str | None, where: str) -> int | None:
    if spec is None:
        return None
    try:
        mode = int(spec, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise BuildError(f"{where}: --chmod: expected an octal mode such as 755, got {spec!r}",
                         exit_code=2)
    return mode


def _owner(spec: str | None, root: str, where: str) -> tuple[int, int]:
    if not spec:
        return 0, 0
    user, _, group = spec.partition(":")

    def lookup(name: str, table: str) -> int:
        if name.isdigit():
            return int(name)
        with contextlib.suppress(OSError):
            for line in Path(kernel.secure_join(root, f"/etc/{table}")).read_text().splitlines():
                fields = line.split(":")
                if len(fields) > 2 and fields[0] == name:
                    return int(fields[2])
        raise BuildError(f"{where}: --chown: no {'user' if table == 'passwd' else 'group'} "
                         f"{name!r} in the image's /etc/{table}")

    uid = lookup(user, "passwd")
    return uid, lookup(group, "group") if group else uid


def _env_dict(env: list[str] | None) -> dict[str, str]:
    out = {}
    for item in env or []:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def _next(state: State, image: Image, ins: cf.Instruction) -> State:
    return State(image=image, config=image.config, base=image.base, shell=state.shell,
                 cmd_from_parent=state.cmd_from_parent and ins.name != "CMD")


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
