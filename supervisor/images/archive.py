"""`save` and `load`: images to and from one tar archive.

An archive we write is, by default, both formats at once, as Docker 25's `docker save`:

    oci-layout, index.json    an OCI image layout (the OCI archive format): each name is an
                              index entry annotated with io.containerd.image.name = the full
                              reference and org.opencontainers.image.ref.name = its tag
    manifest.json             the `docker save` format: [{Config, RepoTags, Layers}], whose
    repositories              paths point into blobs/; `repositories` is the legacy map
                              (repository -> tag -> top layer), read by nothing current
    blobs/sha256/<hex>        manifests, configs, layer tars, as the store holds them

`--format oci-archive` or `docker-archive` writes only that part.  Blobs are copied as they
are (layers stay gzip'd: Docker, Podman and skopeo all read compressed layers in either
format), so an image keeps every digest through save and load.

Loading takes either format, found by its files (oci-layout first).  From a docker archive
without an OCI part the manifest is rebuilt (config and layers keep their digests; the
manifest is ours).  The archive is extracted under the store's tmp/ first, so that blobs
move into place by rename, each verified against its digest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import secrets
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

import msgspec

from supervisor.errors import UsageError
from supervisor.images import oci
from supervisor.images.reference import Reference, parse, try_parse
from supervisor.images.store import Image, ImageError, Store, atomic_file, remove_tree

FORMATS = ("oci-archive", "docker-archive")
T = TypeVar("T")
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class DockerEntry(msgspec.Struct, frozen=True, kw_only=True, rename="pascal"):
    """One image of a `docker save` manifest.json (Docker adds fields of its own)."""

    config: str
    layers: list[str]
    repo_tags: list[str] | None = None


@dataclass(frozen=True)
class Loaded:
    image: Image
    names: tuple[Reference, ...]


# -- save -----------------------------------------------------------------------------------


def save(store: Store, items: list[tuple[Image, Reference | None]], out: IO[bytes], *,
         formats: tuple[str, ...] = FORMATS) -> None:
    """Writes the images (each with the name it was asked by, or None for an ID) as a tar."""
    blobs: dict[str, None] = {}  # ordered set: digests to write
    index: list[oci.Descriptor] = []
    docker: dict[str, tuple[Image, list[str]]] = {}  # manifest digest -> image, RepoTags
    for image, ref in items:
        blobs.update(dict.fromkeys([image.manifest_digest, image.config_digest,
                                    *(d.digest for d in image.manifest.layers)]))
        tag = ref.tag if ref is not None else None  # a digest reference names no tag
        annotations = {oci.CONTAINERD_NAME: str(ref), oci.REF_NAME: tag} if tag else None
        desc = msgspec.structs.replace(store.manifest_descriptor(image),
                                       annotations=annotations)
        if desc not in index:
            index.append(desc)
        entry = docker.setdefault(image.manifest_digest, (image, []))
        if tag and ref is not None and ref.familiar() not in entry[1]:
            entry[1].append(ref.familiar())
    meta: list[tuple[str, bytes]] = []
    if "oci-archive" in formats:
        meta.append(("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'))
        meta.append(("index.json", oci.encode(oci.Index(manifests=index))))
    if "docker-archive" in formats:
        entries = []
        repositories: dict[str, dict[str, str]] = {}
        for image, tags in docker.values():
            layer_paths = [_blob_name(d.digest) for d in image.manifest.layers]
            entries.append({"Config": _blob_name(image.config_digest),
                            "RepoTags": tags or None, "Layers": layer_paths})
            top = image.manifest.layers[-1].digest.removeprefix("sha256:") \
                if image.manifest.layers else ""
            for name in tags:
                ref = parse(name)
                repositories.setdefault(ref.familiar_repository, {})[ref.tag or "latest"] = top
        meta.append(("manifest.json", msgspec.json.encode(entries)))
        meta.append(("repositories", msgspec.json.encode(repositories)))
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, data in meta:
            _add_bytes(tar, name, data)
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for digest in blobs:
            path = store.blob_path(digest)
            info = tarfile.TarInfo(_blob_name(digest))
            info.size, info.mode = path.stat().st_size, 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)


def save_to(store: Store, items: list[tuple[Image, Reference | None]], path: Path, *,
            formats: tuple[str, ...] = FORMATS) -> None:
    """`save -o`: written aside, renamed into place, so a failed save leaves no half file."""
    with atomic_file(path) as f:
        save(store, items, f, formats=formats)


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


# -- load -----------------------------------------------------------------------------------


class _Extracted:
    """An archive unpacked into a folder: regular files only, links kept as a map (older
    `docker save` archives link repeated layers), every name checked to stay inside."""

    def __init__(self, root: Path, where: str) -> None:
        self.root = root
        self.where = where
        self.links: dict[str, str] = {}

    def extract(self, stream: IO[bytes]) -> None:
        try:
            with tarfile.open(fileobj=stream, mode="r|*") as tar:
                for member in tar:
                    rel = self._clean(member.name)
                    if not rel:
                        continue
                    if member.issym():
                        linked = posixpath.normpath(
                            posixpath.join(posixpath.dirname(rel), member.linkname))
                        self.links[rel] = self._clean(linked)
                    elif member.islnk():
                        self.links[rel] = self._clean(member.linkname)
                    elif member.isreg():
                        target = self.root / rel
                        target.parent.mkdir(parents=True, exist_ok=True)
                        src = tar.extractfile(member)
                        assert src is not None
                        with open(target, "wb") as f:
                            shutil.copyfileobj(src, f, 1 << 20)
        except (tarfile.TarError, EOFError, gzip.BadGzipFile) as e:
            raise ImageError(f"{self.where}: not a readable tar archive ({e})") from e
        except OSError as e:  # e.g. a file where the archive later wants a directory
            raise ImageError(f"{self.where}: cannot extract: {e.strerror}: "
                             f"{e.filename}") from e

    def _clean(self, name: str) -> str:
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ImageError(f"{self.where}: {name}: a path outside the archive")
        return "/".join(parts)

    def path(self, name: str) -> Path:
        rel = self._clean(name)
        for _ in range(16):
            if rel not in self.links:
                break
            rel = self.links[rel]
        path = self.root / rel
        if not path.is_file():
            raise ImageError(f"{self.where}: {name}: missing from the archive")
        return path

    def has(self, name: str) -> bool:
        return name in self.links or (self.root / name).is_file()


def load(store: Store, stream: IO[bytes], where: str) -> list[Loaded]:
    """Loads every image of an archive in either format; tags what the archive names."""
    store.ensure()
    work = Path(tempfile.mkdtemp(prefix="load-", dir=store.tmp))
    try:
        archive = _Extracted(work, where)
        archive.extract(stream)
        if archive.has("oci-layout") and archive.has("index.json"):
            loaded = _load_oci(store, archive)
        elif archive.has("manifest.json"):
            loaded = _load_docker(store, archive)
        else:
            raise ImageError(f"{where}: neither an OCI archive (oci-layout, index.json) nor a "
                             "`docker save` archive (manifest.json)")
    finally:
        remove_tree(work)
    for item in loaded:
        for ref in item.names:
            store.tag(ref, store.manifest_descriptor(item.image))
    return loaded


def _adopt(store: Store, archive: _Extracted, desc: oci.Descriptor) -> None:
    if store.has_blob(desc.digest):
        return
    path = archive.path(_blob_name(desc.digest))
    if path.stat().st_size != desc.size:
        raise ImageError(f"{archive.where}: blob {desc.digest}: {path.stat().st_size} bytes, "
                         f"expected {desc.size}")
    try:
        store.adopt_file(path, desc.digest)
    except ImageError as e:
        raise ImageError(f"{archive.where}: {e}") from e


def _name_of(desc: oci.Descriptor) -> Reference | None:
    """io.containerd.image.name (Docker's), else a ref.name that is a whole reference
    (skopeo's `oci-archive:FILE:app:1`, ours); a bare tag names no repository."""
    annotations = desc.annotations or {}
    full = annotations.get(oci.CONTAINERD_NAME)
    if full:
        return try_parse(full)
    ref_name = annotations.get(oci.REF_NAME, "")
    if ":" in ref_name or "/" in ref_name:
        return try_parse(ref_name)
    return None


def _manifests(store: Store, archive: _Extracted, index: oci.Index,
               ) -> Iterator[tuple[oci.Descriptor, oci.Descriptor]]:
    """(entry naming it, manifest) for each index entry, a nested index resolved to this
    machine's platform."""
    arch = oci.architecture()
    for entry in index.manifests:
        if entry.mediaType in oci.INDEXES:
            _adopt(store, archive, entry)
            nested = _decode(oci.decode_index, store.read_blob(entry.digest), archive.where)
            fits = [m for m in nested.manifests if m.platform is None
                    or (m.platform.os == "linux" and m.platform.architecture == arch)]
            if not fits:
                raise ImageError(f"{archive.where}: {entry.digest}: no image for linux/{arch}")
            yield entry, fits[0]
        else:
            yield entry, entry


def _decode(decoder: Callable[[bytes], T], data: bytes, where: str) -> T:
    try:
        return decoder(data)
    except msgspec.DecodeError as e:
        raise ImageError(f"{where}: {e}") from e


def _load_oci(store: Store, archive: _Extracted) -> list[Loaded]:
    index: oci.Index = _decode(oci.decode_index, archive.path("index.json").read_bytes(),
                               f"{archive.where}: index.json")
    by_digest: dict[str, list[Reference]] = {}
    for entry, desc in _manifests(store, archive, index):
        _adopt(store, archive, desc)
        manifest: oci.Manifest = _decode(oci.decode_manifest, store.read_blob(desc.digest),
                                         f"{archive.where}: {desc.digest}")
        for d in [manifest.config, *manifest.layers]:
            _adopt(store, archive, d)
        names = by_digest.setdefault(desc.digest, [])
        ref = _name_of(entry)
        if ref is not None and ref not in names:
            names.append(ref)
    return [Loaded(store.load_image(d), tuple(n)) for d, n in by_digest.items()]


def _load_docker(store: Store, archive: _Extracted) -> list[Loaded]:
    try:
        entries = msgspec.json.decode(archive.path("manifest.json").read_bytes(),
                                      type=list[DockerEntry])
    except msgspec.DecodeError as e:
        raise ImageError(f"{archive.where}: manifest.json: {e}") from e
    out = []
    for entry in entries:
        config_path = archive.path(entry.config)
        config_bytes = config_path.read_bytes()
        config: oci.ImageConfig = _decode(oci.decode_config, config_bytes,
                                          f"{archive.where}: {entry.config}")
        diff_ids = config.rootfs.diff_ids
        if len(diff_ids) != len(entry.layers):
            raise ImageError(f"{archive.where}: {entry.config}: {len(diff_ids)} diff_ids for "
                             f"{len(entry.layers)} layers")
        layer_list = []
        for name, diff_id in zip(entry.layers, diff_ids, strict=True):
            path = archive.path(name)
            media = _layer_media_type(path)
            if _diff_id(path, media) != diff_id:
                raise ImageError(f"{archive.where}: {name}: content does not match the "
                                 f"config's diff_id {diff_id}")
            layer_list.append(oci.Descriptor(mediaType=media, digest=_copy_in(store, path),
                                             size=path.stat().st_size))
        config_desc = oci.Descriptor(mediaType=oci.OCI_CONFIG,
                                     digest=store.put_bytes(config_bytes),
                                     size=len(config_bytes))
        manifest = oci.Manifest(config=config_desc, layers=layer_list)
        digest = store.put_json(manifest, oci.OCI_MANIFEST).digest
        names = tuple(r for r in (try_parse(t) for t in entry.repo_tags or []) if r)
        out.append(Loaded(store.load_image(digest), names))
    return out


def _copy_in(store: Store, path: Path) -> str:
    """Adopts a layer file through a hard link: the archive may name it more than once."""
    tmp = store.tmp / f"layer-{secrets.token_hex(8)}"
    os.link(path, tmp)
    return store.adopt_file(tmp)


def _layer_media_type(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(_GZIP_MAGIC):
        return oci.OCI_LAYER_GZIP
    if head == _ZSTD_MAGIC:
        return oci.OCI_LAYER_ZSTD
    return oci.OCI_LAYER_TAR


def _diff_id(path: Path, media_type: str) -> str:
    h = hashlib.sha256()
    if media_type == oci.OCI_LAYER_ZSTD:
        proc = subprocess.run(["zstd", "-dcq", str(path)], capture_output=True, check=False)
        if proc.returncode != 0:
            raise ImageError(f"{path.name}: zstd -d failed: {proc.stderr.decode().strip()}")
        h.update(proc.stdout)
        return "sha256:" + h.hexdigest()
    opener = gzip.open if media_type == oci.OCI_LAYER_GZIP else open
    try:
        with opener(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except (OSError, EOFError) as e:
        raise ImageError(f"{path.name}: {e}") from e
    return "sha256:" + h.hexdigest()


def parse_format(text: str | None) -> tuple[str, ...]:
    if text is None:
        return FORMATS
    if text not in FORMATS:
        raise UsageError(f"supervise save: --format: expected one of {', '.join(FORMATS)}, "
                         f"got {text!r}")
    return (text,)
