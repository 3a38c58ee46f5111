"""What a container takes from its image: the read-only lower dirs and the config's
defaults (Cmd, Entrypoint, Env, WorkingDir, User, Volumes, ExposedPorts).

Resolved once, when the container is created, and kept beside its record (`image.json`): a
container keeps running the image it was made from even if its tag moves on, as Docker's
does.  The stack's own config stays as written, so `up` still compares like with like.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from supervisor import config
from supervisor.errors import ContainerError, SupervisorError
from supervisor.images.store import Image, Store
from supervisor.protocol import MountRecord
from supervisor.volumes import Volumes

IMAGE_FILE = "image.json"


class ImageUse(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ref: str  # as the container's config names it
    id: str  # the config digest (Docker's image ID)
    manifest: str
    lower: list[str]  # overlay order: top layer first
    host_base: bool = False  # the layers sit on the `host` image (its base and /usr)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = []
    working_dir: str | None = None
    user: str | None = None
    volumes: list[str] = []
    exposed_ports: list[str] = []

    def has_command(self) -> bool:
        return bool(self.entrypoint or self.cmd)


def from_image(store: Store, image: Image, ref: str) -> ImageUse:
    """Unpacks what is not yet and describes the image for a container."""
    lower = [str(p) for p in reversed(store.unpacked(image))]
    if not lower and image.base is None:
        empty = store.root / "empty"  # overlayfs needs a lower dir: `scratch` has none
        empty.mkdir(parents=True, exist_ok=True)
        lower = [str(empty)]
    c = image.config.config
    return ImageUse(ref=ref, id=image.config_digest, manifest=image.manifest_digest,
                    lower=lower, host_base=image.base == "host", entrypoint=c.Entrypoint,
                    cmd=c.Cmd, env=list(c.Env or []), working_dir=c.WorkingDir or None,
                    user=c.User or None, volumes=sorted(c.Volumes or {}),
                    exposed_ports=sorted(c.ExposedPorts or {}))


def for_container(name: str, image: str | None) -> ImageUse | None:
    """The image a container's `image` key names; None for `host` and rootfs dirs."""
    if image is None or image == "host":
        return None
    store = Store.default()
    try:
        return from_image(store, store.resolve(image), image)
    except SupervisorError as e:
        raise ContainerError(name, str(e).removeprefix("image ")) from e


def current_id(image: str | None) -> str | None:
    """The ID `image` names in the store now (None for `host`, a rootfs, or a name the store
    does not have: creating the container will say so)."""
    if image is None or image == "host":
        return None
    try:
        return Store.default().resolve(image).id
    except SupervisorError:
        return None


def save(directory: Path, use: ImageUse | None) -> None:
    if use is not None:
        (directory / IMAGE_FILE).write_bytes(msgspec.json.encode(use))


def load(directory: Path) -> ImageUse | None:
    try:
        return msgspec.json.decode((directory / IMAGE_FILE).read_bytes(), type=ImageUse)
    except FileNotFoundError:
        return None


def argv(entrypoint: list[str] | None, command: list[str] | None,
         use: ImageUse | None) -> list[str]:
    """Docker's rule: an entrypoint given by the container drops the image's Cmd too."""
    if use is None:
        return list(entrypoint or []) + list(command or [])
    if entrypoint is not None:
        return list(entrypoint) + list(command or [])
    return list(use.entrypoint or []) + list(command if command else use.cmd or [])


def env(use: ImageUse | None) -> dict[str, str]:
    out = {}
    for item in use.env if use is not None else []:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def volume_mounts(use: ImageUse | None, mounts: Sequence[MountRecord], cfg: config.Container,
                  volumes: Volumes, anonymous: Mapping[str, str] | None,
                  ) -> list[MountRecord]:
    """The image's VOLUMEs that nothing else is mounted on: anonymous volumes, as Docker's
    (kept by a recreated container, as its own anonymous volumes are)."""
    if use is None:
        return []
    taken = {m.target for m in mounts} | {t.target for t in cfg.tmpfs}
    out = []
    for target in use.volumes:
        target = os.path.normpath(target)
        if target in taken:
            continue
        reused = (anonymous or {}).get(target)
        if reused is not None:
            name, data = reused, volumes.ensure(reused)
        else:
            name, data = volumes.new_anonymous()
            seed_volume(data, use.lower, target)
        out.append(MountRecord(type="volume", source=str(data), target=target, name=name,
                               anonymous=True))
    return out


def seed_volume(data: Path, lower: Sequence[str], target: str) -> None:
    """A new volume starts with what the image has at its path, as Docker's does.

    The layers that show something there are found top down, as overlayfs would: a layer in
    which the path (or a parent) is a whiteout, or not a directory, hides everything below
    it (and a symlinked parent is never followed: it could point anywhere on this host); an
    opaque directory on the way hides what is below it too.  Those layers are then merged
    bottom up, their own whiteouts honoured."""
    from supervisor.images.layers import is_opaque, is_whiteout

    parts = [p for p in target.split("/") if p]
    if not parts:
        return
    visible: list[Path] = []  # top first
    for layer in lower:  # `lower` is top first
        src, hidden_below, found = Path(layer), False, True
        for part in parts:
            src = src / part
            try:
                st = os.lstat(src)
            except OSError:
                found = False  # this layer does not touch the path
                break
            if is_whiteout(st) or not stat.S_ISDIR(st.st_mode):
                found, hidden_below = False, True
                break
            if is_opaque(src):
                hidden_below = True  # this layer's content, nothing older
        if found:
            visible.append(src)
        if hidden_below:
            break
    for src in reversed(visible):
        st = os.lstat(src)
        if is_opaque(src):
            _clear(data)
        os.chown(data, st.st_uid, st.st_gid)
        os.chmod(data, stat.S_IMODE(st.st_mode))
        _merge(src, data)


def _merge(src: Path, dst: Path) -> None:
    from supervisor.images.layers import is_opaque, is_whiteout

    for entry in os.scandir(src):
        st = entry.stat(follow_symlinks=False)
        target = dst / entry.name
        if is_whiteout(st):
            _remove(target)
            continue
        if stat.S_ISDIR(st.st_mode):
            if not target.is_dir() or target.is_symlink() or is_opaque(entry.path):
                _remove(target)
            target.mkdir(exist_ok=True)
            _merge(Path(entry.path), target)
        else:
            _remove(target)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(entry.path), target)
            elif stat.S_ISREG(st.st_mode):
                shutil.copyfile(entry.path, target, follow_symlinks=False)
            else:
                continue  # devices, fifos, sockets: not seeded
        os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(target, stat.S_IMODE(st.st_mode))
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def _clear(folder: Path) -> None:
    for entry in os.scandir(folder):
        _remove(Path(entry.path))


def _remove(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
