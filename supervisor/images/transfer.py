"""`push` and `pull`: an image between the store and a registry, blob by blob.

Push sends what the repository lacks: each layer and the config is looked up first (HEAD),
mounted from another repository of the same registry when we know it has the blob (every
push and pull records, in the store's ``sources/<hex>``, the repositories a blob is known to
be in, as Docker's distribution metadata does), else uploaded.  The manifest goes last, as
it is stored (its digest does not change).

Pull takes an OCI or Docker schema 2 manifest (a multi-platform index resolves to this
machine's), fetches the blobs the store lacks, and checks every one against its digest
before it enters the store.  Layers are unpacked later, when a container first uses them.

Progress is one line per blob on stderr (Docker's words: "Pushed", "Layer already exists",
"Pull complete"...); on a terminal the line is a bar while the blob moves.
"""

from __future__ import annotations

import hashlib
import secrets
import sys
import time
from collections.abc import Iterator
from typing import TextIO

import msgspec

from supervisor.images import oci
from supervisor.images.auth import Credentials
from supervisor.images.reference import Reference
from supervisor.images.registry import Registry, RegistryError
from supervisor.images.store import Image, ImageError, Store

_CHUNK = 1 << 20


class Progress:
    """A line per blob; on a terminal, a bar redrawn at most 10 times a second."""

    def __init__(self, out: TextIO | None = None, *, quiet: bool = False) -> None:
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.quiet = quiet
        self._shown = 0.0

    def line(self, digest: str, status: str) -> None:
        if self.quiet:
            return
        end = "\x1b[K\n" if self.tty else "\n"
        self.out.write(f"\r{_short(digest)}: {status}{end}" if self.tty
                       else f"{_short(digest)}: {status}{end}")
        self.out.flush()

    def bar(self, digest: str, verb: str, done: int, total: int) -> None:
        if self.quiet or not self.tty or (time.monotonic() - self._shown < 0.1 and done < total):
            return
        self._shown = time.monotonic()
        width = 30
        filled = width * done // total if total else width
        arrow = "=" * max(0, filled - 1) + (">" if filled else "")
        self.out.write(f"\r{_short(digest)}: {verb} [{arrow:<{width}}] "
                       f"{_size(done)}/{_size(total)}\x1b[K")
        self.out.flush()


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}GB"


# -- where blobs are known to be --------------------------------------------------------------


def sources(store: Store, digest: str, domain: str) -> list[str]:
    """Repositories (paths) of `domain` known to hold the blob, most recent first."""
    out = [line.partition("/")[2] for line in reversed(_lines(store, digest))
           if line.partition("/")[0] == domain]
    return list(dict.fromkeys(out))


def remember(store: Store, digest: str, ref: Reference) -> None:
    """Appends `domain/path` to the blob's sources (a short line: atomic as an append)."""
    if ref.repository in _lines(store, digest):
        return
    store.sources_dir.mkdir(parents=True, exist_ok=True)
    with open(store.sources_dir / digest.removeprefix("sha256:"), "a") as f:
        f.write(ref.repository + "\n")


def _lines(store: Store, digest: str) -> list[str]:
    try:
        return (store.sources_dir / digest.removeprefix("sha256:")).read_text().split()
    except FileNotFoundError:
        return []


# -- push ------------------------------------------------------------------------------------


def push(store: Store, image: Image, ref: Reference, *, creds: Credentials | None,
         progress: Progress) -> str:
    """Pushes `image` as `ref`; returns the manifest's digest."""
    with Registry(ref.domain, ref.path, creds=creds, actions="pull,push") as reg:
        reg.ping()
        for desc in [*image.manifest.layers, image.manifest.config]:
            _push_blob(store, reg, desc, ref, progress)
        data = store.read_blob(image.manifest_digest)
        media = image.manifest.mediaType or oci.OCI_MANIFEST
        answered = reg.put_manifest(ref.tag or ref.digest or "latest", data, media)
    if answered is not None and answered != image.manifest_digest:
        raise RegistryError(f"{ref.familiar()}: the registry stored the manifest as "
                            f"{answered}, expected {image.manifest_digest}")
    return image.manifest_digest


def _push_blob(store: Store, reg: Registry, desc: oci.Descriptor, ref: Reference,
               progress: Progress) -> None:
    if reg.blob_exists(desc.digest):
        progress.line(desc.digest, "Layer already exists")
        remember(store, desc.digest, ref)
        return
    location: str | None = None
    for source in sources(store, desc.digest, ref.domain):
        if source == ref.path:
            continue
        location = reg.mount(desc.digest, source)
        if location is None:
            progress.line(desc.digest, f"Mounted from {source}")
            remember(store, desc.digest, ref)
            return
        break  # the registry opened an upload instead: use it
    if location is None:
        location = reg.start_upload()
    path = store.blob_path(desc.digest)
    size = path.stat().st_size

    def chunks() -> Iterator[bytes]:
        sent = 0
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                sent += len(chunk)
                progress.bar(desc.digest, "Pushing", sent, size)
                yield chunk

    reg.upload(location, desc.digest, size, chunks())
    progress.line(desc.digest, "Pushed")
    remember(store, desc.digest, ref)


# -- pull ------------------------------------------------------------------------------------


def pull(store: Store, ref: Reference, *, creds: Credentials | None,
         progress: Progress) -> Image:
    """Pulls `ref` into the store and tags it (a digest reference stays untagged)."""
    store.ensure()
    with Registry(ref.domain, ref.path, creds=creds, actions="pull") as reg:
        reg.ping()
        data, media = reg.get_manifest(ref.digest or ref.tag or "latest")
        digest = _digest(data)
        if ref.digest is not None and digest != ref.digest:
            raise RegistryError(f"{ref.familiar()}: the registry sent a manifest of digest "
                                f"{digest}")
        if media in oci.INDEXES or (not media and b'"manifests"' in data):
            chosen = _platform(data, ref)
            data, media = reg.get_manifest(chosen.digest)
            if _digest(data) != chosen.digest:
                raise RegistryError(f"{ref.familiar()}: manifest {chosen.digest} does not "
                                    "match its digest")
        if media and media not in oci.MANIFESTS:
            raise RegistryError(f"{ref.familiar()}: unsupported manifest type {media}")
        try:
            manifest = oci.decode_manifest(data)
        except msgspec.DecodeError as e:
            raise RegistryError(f"{ref.familiar()}: not an image manifest ({e})") from e
        for desc in [*manifest.layers, manifest.config]:
            if store.has_blob(desc.digest):
                progress.line(desc.digest, "Already exists")
            else:
                _fetch(store, reg, desc, progress)
                progress.line(desc.digest, "Pull complete")
            remember(store, desc.digest, ref)
    image = store.load_image(store.put_bytes(data), (str(ref),) if ref.tag else ())
    if ref.tag is not None:
        store.tag(ref, store.manifest_descriptor(image))
    return image


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _platform(data: bytes, ref: Reference) -> oci.Descriptor:
    try:
        index = oci.decode_index(data)
    except msgspec.DecodeError as e:
        raise RegistryError(f"{ref.familiar()}: not an image index ({e})") from e
    arch = oci.architecture()
    for m in index.manifests:
        p = m.platform
        if p is None or (p.os == "linux" and p.architecture == arch):
            return m
    raise RegistryError(f"{ref.familiar()}: no image for linux/{arch}")


def _fetch(store: Store, reg: Registry, desc: oci.Descriptor, progress: Progress) -> None:
    tmp = store.tmp / f"pull-{secrets.token_hex(8)}"
    h = hashlib.sha256()
    got = 0
    try:
        with reg.blob(desc.digest) as chunks, open(tmp, "wb") as f:
            for chunk in chunks:
                got += len(chunk)
                if got > desc.size:  # no filling the disk past what the manifest declared
                    raise ImageError(f"{reg.domain}/{reg.repository}: blob {desc.digest}: "
                                     f"more than the {desc.size} bytes declared")
                f.write(chunk)
                h.update(chunk)
                progress.bar(desc.digest, "Downloading", got, desc.size)
        actual = "sha256:" + h.hexdigest()
        if actual != desc.digest or got != desc.size:
            raise ImageError(f"{reg.domain}/{reg.repository}: blob {desc.digest}: received "
                             f"{got} bytes of digest {actual}, expected {desc.size} bytes")
        store.adopt_file(tmp, desc.digest, verified=True)
    finally:
        tmp.unlink(missing_ok=True)
