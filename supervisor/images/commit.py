"""`diff` and `commit`: a container's writable layer as changes, and as a new image.

The writable layer is the container's overlay upper dir, read while the container is not
mounted by us: whiteouts there are overlayfs's, and `layers.write_layer` turns them into
OCI ones.  A container on a rootfs folder gets that folder as its image's first layer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec

from supervisor import config
from supervisor.container import load_record
from supervisor.errors import ContainerError
from supervisor.images import layers, oci
from supervisor.images import use as image_use
from supervisor.images.reference import Reference
from supervisor.images.store import Image, Store
from supervisor.paths import ProjectPaths
from supervisor.rootfs import host_base_layer


def _load(paths: ProjectPaths, name: str,
          ) -> tuple[config.Container, image_use.ImageUse | None, Path]:
    d = paths.container(name)
    try:
        record = load_record(d / "record.json")
    except FileNotFoundError:
        raise ContainerError(name, f"no such container in project {paths.project}") from None
    cfg = msgspec.json.decode(record.config, type=config.Container)
    return cfg, image_use.load(d), d / "upper"


def changes(paths: ProjectPaths, name: str) -> list[tuple[str, str]]:
    cfg, use, upper = _load(paths, name)
    if use is not None:
        lowers = [Path(p) for p in use.lower]
        if use.host_base:
            lowers.append(host_base_layer(paths.layers))
    elif cfg.rootfs is not None:
        lowers = [Path(cfg.rootfs)]
    else:
        lowers = [host_base_layer(paths.layers)]
    return layers.changes(upper, lowers)


def commit(store: Store, paths: ProjectPaths, name: str, ref: Reference | None, *,
           author: str | None = None, message: str | None = None) -> Image:
    cfg, use, upper = _load(paths, name)
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    base: str | None = None
    if use is not None:
        parent = store.load_image(use.manifest)
        image_cfg, layer_list, base = parent.config, list(parent.manifest.layers), parent.base
    else:
        image_cfg = oci.ImageConfig(created=now, architecture=oci.architecture())
        layer_list = []
        if cfg.rootfs is not None:  # the folder becomes the first layer
            written = layers.write_layer(Path(cfg.rootfs), store.tmp)
            layer_list.append(store.adopt_layer(written))
            image_cfg = _with_layer(image_cfg, written.diff_id, f"rootfs {cfg.rootfs}", now)
        else:
            base = "host"
    store.ensure()
    written = layers.write_layer(upper, store.tmp, exclude=layers.RUNTIME_FILES)
    layer_list.append(store.adopt_layer(written))
    image_cfg = _with_layer(image_cfg, written.diff_id, f"supervise commit {name}", now,
                            comment=message)
    c = image_cfg.config
    overrides: dict[str, object] = {}
    if cfg.entrypoint is not None:
        overrides["Entrypoint"] = cfg.entrypoint
        overrides["Cmd"] = cfg.command
    elif cfg.command is not None:
        overrides["Cmd"] = cfg.command
    if cfg.environment:
        env = dict(item.partition("=")[::2] for item in c.Env or [])
        overrides["Env"] = [f"{k}={v}" for k, v in {**env, **cfg.environment}.items()]
    if cfg.working_dir:
        overrides["WorkingDir"] = cfg.working_dir
    if cfg.user:
        overrides["User"] = cfg.user
    image_cfg = msgspec.structs.replace(image_cfg, author=author or image_cfg.author,
                                        config=msgspec.structs.replace(c, **overrides))
    image = store.write_image(layer_list, image_cfg, base)
    if ref is not None:
        store.tag(ref, store.manifest_descriptor(image))
    return image


def _with_layer(cfg: oci.ImageConfig, diff_id: str, created_by: str, now: str,
                comment: str | None = None) -> oci.ImageConfig:
    return msgspec.structs.replace(
        cfg, created=now, rootfs=oci.RootFS(diff_ids=[*cfg.rootfs.diff_ids, diff_id]),
        history=[*cfg.history, oci.History(created=now, created_by=created_by,
                                           comment=comment)])
