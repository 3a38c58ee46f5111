"""The local image store: an OCI image layout, plus each layer unpacked once.

    $SUPERVISE_IMAGE_DIR (default $SUPERVISE_STATE_DIR/_images, i.e. /var/lib/supervise/_images)
      oci-layout, index.json     the layout: tags are index entries annotated with
                                 org.opencontainers.image.ref.name = the full reference
      blobs/sha256/<hex>         manifests, configs and layer tars, named by their digest
      layers/<chainid hex>/      each layer unpacked (overlayfs whiteouts), read-only lower
      cache/<key hex>            the build cache: key -> manifest digest
      sources/<hex>              registry repositories a blob is known to be in (for mounts)
      tmp/                       work in progress (renamed into place when complete)

Images are shared by every project, as Docker's are.  The folder is `_images` so that no
project (names start with a letter or digit) can share it.  Every file appears complete or
not at all (written aside, then renamed), and index.json changes under a lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgspec

from supervisor.errors import SupervisorError
from supervisor.images import layers, oci
from supervisor.images.reference import DIGEST_RE, Reference, parse
from supervisor.paths import state_root


class ImageError(SupervisorError):
    """An image is missing, malformed, or cannot be stored."""


def image_root(environ: Mapping[str, str] = os.environ) -> Path:
    explicit = environ.get("SUPERVISE_IMAGE_DIR")
    return Path(explicit) if explicit else state_root(environ) / "_images"


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(n))."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def _hex(digest: str) -> str:
    algo, _, value = digest.partition(":")
    if algo != "sha256" or len(value) != 64 or not all(c in "0123456789abcdef" for c in value):
        raise ImageError(f"expected a sha256 digest, got {digest!r}")
    return value


@dataclass(frozen=True)
class Image:
    """A resolved image: its manifest and config (decoded), and their digests."""

    manifest_digest: str
    manifest: oci.Manifest
    config_digest: str
    config: oci.ImageConfig
    names: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """Docker's image ID: the config's digest."""
        return self.config_digest

    @property
    def short_id(self) -> str:
        return self.config_digest.removeprefix("sha256:")[:12]

    @property
    def base(self) -> str | None:
        """`host` when the layers sit on the host image, else None."""
        return (self.manifest.annotations or {}).get(oci.BASE_ANNOTATION)

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.rootfs.diff_ids)

    @property
    def size(self) -> int:
        return sum(d.size for d in self.manifest.layers)


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def default(cls, environ: Mapping[str, str] = os.environ) -> Store:
        return cls(image_root(environ))

    # -- places --------------------------------------------------------------------------

    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    @property
    def layers_dir(self) -> Path:
        return self.root / "layers"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def sources_dir(self) -> Path:
        """sources/<hex>: the registry repositories a blob is known to be in (push/pull)."""
        return self.root / "sources"

    def blob_path(self, digest: str) -> Path:
        return self.blobs / _hex(digest)

    def layer_path(self, chain_id: str) -> Path:
        return self.layers_dir / _hex(chain_id)

    def ensure(self) -> None:
        # Unpacked layers hold images' setuid files and device nodes as they are: only root
        # may reach them (overlay mounts are made by root), as Docker's 0710 and podman's
        # 0700 folders.  Blobs stay readable (a tar's setuid bits are inert).
        self.root.mkdir(mode=0o711, parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        for d in (self.layers_dir, self.tmp):
            d.mkdir(mode=0o700, exist_ok=True)
            os.chmod(d, 0o700)
        for d in (self.blobs, self.cache_dir):
            d.mkdir(parents=True, exist_ok=True)
        layout = self.root / "oci-layout"
        if not layout.exists():
            _write_atomic(layout, b'{"imageLayoutVersion":"1.0.0"}')
        if not (self.root / "index.json").exists():
            _write_atomic(self.root / "index.json", oci.encode(oci.Index()))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.ensure()
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- blobs ---------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def read_blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"blob {digest}: not in the store") from None

    def put_bytes(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            self.ensure()
            _write_atomic(path, data)
        return digest

    def put_json(self, value: msgspec.Struct, media_type: str) -> oci.Descriptor:
        data = oci.encode(value)
        return oci.Descriptor(mediaType=media_type, digest=self.put_bytes(data), size=len(data))

    def adopt_file(self, path: Path, digest: str | None = None, *,
                   verified: bool = False) -> str:
        """Moves a finished file into the blobs (verifying or computing its digest; a caller
        that hashed it on the way in says `verified`)."""
        actual = digest if verified and digest is not None else _file_digest(path)
        if digest is not None and digest != actual:
            path.unlink(missing_ok=True)
            raise ImageError(f"blob {digest}: content does not match, got {actual}")
        target = self.blob_path(actual)
        if target.exists():
            path.unlink()
        else:
            path.replace(target)
        return actual

    def adopt_layer(self, written: layers.Written) -> oci.Descriptor:
        target = self.blob_path(written.digest)
        if target.exists():
            written.path.unlink()
        else:
            written.path.replace(target)
        return oci.Descriptor(mediaType=written.media_type, digest=written.digest,
                              size=written.size)

    # -- the index -----------------------------------------------------------------------

    def index(self) -> oci.Index:
        try:
            return oci.decode_index((self.root / "index.json").read_bytes())
        except FileNotFoundError:
            return oci.Index()
        except msgspec.DecodeError as e:
            raise ImageError(f"{self.root / 'index.json'}: {e}") from e

    def _write_index(self, index: oci.Index) -> None:
        _write_atomic(self.root / "index.json", oci.encode(index))

    def tags(self) -> dict[str, str]:
        """Full reference -> manifest digest."""
        out = {}
        for d in self.index().manifests:
            name = (d.annotations or {}).get(oci.REF_NAME)
            if name:
                out[name] = d.digest
        return out

    def tag(self, ref: Reference, manifest: oci.Descriptor) -> None:
        """Points `ref` at a manifest (moving it if it named another image)."""
        name = str(ref)
        desc = msgspec.structs.replace(manifest, annotations={oci.REF_NAME: name},
                                       platform=None)
        with self.locked():
            index = self.index()
            kept = [d for d in index.manifests if (d.annotations or {}).get(oci.REF_NAME) != name]
            self._write_index(msgspec.structs.replace(index, manifests=[*kept, desc]))

    def untag(self, ref: Reference) -> bool:
        name = str(ref)
        with self.locked():
            index = self.index()
            kept = [d for d in index.manifests if (d.annotations or {}).get(oci.REF_NAME) != name]
            if len(kept) == len(index.manifests):
                return False
            self._write_index(msgspec.structs.replace(index, manifests=kept))
            return True

    # -- images --------------------------------------------------------------------------

    def load_image(self, manifest_digest: str, names: tuple[str, ...] = ()) -> Image:
        try:
            manifest = oci.decode_manifest(self.read_blob(manifest_digest))
            config = oci.decode_config(self.read_blob(manifest.config.digest))
        except msgspec.DecodeError as e:
            raise ImageError(f"image {manifest_digest}: {e}") from e
        if len(config.rootfs.diff_ids) != len(manifest.layers):
            raise ImageError(f"image {manifest_digest}: {len(manifest.layers)} layers but "
                             f"{len(config.rootfs.diff_ids)} diff_ids")
        return Image(manifest_digest, manifest, manifest.config.digest, config, names)

    def images(self) -> list[Image]:
        """Every tagged image, one entry per manifest with all its names."""
        by_digest: dict[str, list[str]] = {}
        for name, digest in self.tags().items():
            by_digest.setdefault(digest, []).append(name)
        return [self.load_image(d, tuple(sorted(n))) for d, n in by_digest.items()]

    def resolve(self, text: str) -> Image:
        """A tagged reference, a digest, or an image ID (or a prefix of one, 4+ hex)."""
        if DIGEST_RE.fullmatch(text) and self.has_blob(text):
            with contextlib.suppress(ImageError):
                return self.load_image(text)  # a manifest digest (builds name steps so)
        tags = self.tags()
        ref = None
        with contextlib.suppress(SupervisorError):
            ref = parse(text)
        if ref is not None and ref.tag is not None and str(ref.with_tag(ref.tag)) in tags:
            name = str(ref.with_tag(ref.tag))
            return self.load_image(tags[name], (name,))
        if ref is not None and ref.digest is not None and self.has_blob(ref.digest):
            return self.load_image(ref.digest)
        wanted = text.removeprefix("sha256:")
        if len(wanted) >= 4 and all(c in "0123456789abcdef" for c in wanted):
            found = [i for i in self.images()
                     if i.config_digest.removeprefix("sha256:").startswith(wanted)
                     or i.manifest_digest.removeprefix("sha256:").startswith(wanted)]
            if len({i.manifest_digest for i in found}) == 1:
                return found[0]
            if found:
                raise ImageError(f"image {text!r}: ambiguous, matches {len(found)} images")
        raise ImageError(f"image {text!r}: no such image (build it, pull it or load it)")

    def write_image(self, layer_list: list[oci.Descriptor], config: oci.ImageConfig,
                    base: str | None = None) -> Image:
        """Writes config and manifest blobs for an image whose layers are stored."""
        cdesc = self.put_json(config, oci.OCI_CONFIG)
        manifest = oci.Manifest(config=cdesc, layers=layer_list,
                                annotations={oci.BASE_ANNOTATION: base} if base else None)
        mdesc = self.put_json(manifest, oci.OCI_MANIFEST)
        return Image(mdesc.digest, manifest, cdesc.digest, config)

    def manifest_descriptor(self, image: Image) -> oci.Descriptor:
        return oci.Descriptor(mediaType=image.manifest.mediaType or oci.OCI_MANIFEST,
                              digest=image.manifest_digest,
                              size=self.blob_path(image.manifest_digest).stat().st_size)

    # -- unpacked layers -----------------------------------------------------------------

    def unpacked(self, image: Image) -> list[Path]:
        """The image's layers as overlay lower dirs, bottom first, unpacking what is not yet."""
        out = []
        for desc, diff_id, chain_id in zip(image.manifest.layers, image.diff_ids,
                                           chain_ids(image.diff_ids), strict=True):
            out.append(self.unpack_layer(desc, diff_id, chain_id))
        return out

    def unpack_layer(self, desc: oci.Descriptor, diff_id: str, chain_id: str) -> Path:
        """The layer unpacked under its ChainID, once its tar is checked to be `diff_id`'s:
        the folder is shared by every image naming that ChainID, so an image claiming
        another's DiffID must not get to fill it."""
        final = self.layer_path(chain_id)
        if final.is_dir():
            return final
        self.ensure()
        work = Path(tempfile.mkdtemp(prefix="unpack-", dir=self.tmp))
        try:
            layers.unpack(self.blob_path(desc.digest), desc.mediaType, work, diff_id)
            os.chmod(work, 0o755)  # the image's "/" (reachable by root only: layers/ is 0700)
            try:
                work.rename(final)
            except OSError:  # another process unpacked it first
                pass
        finally:
            if work.exists():
                remove_tree(work)
        return final

    # -- garbage collection --------------------------------------------------------------

    def prune(self, keep_manifests: set[str], keep_layer_dirs: set[str],
              ) -> tuple[int, int]:
        """Removes the build cache, then every blob that no tag and no `keep_manifests` reach,
        and every unpacked layer no kept image or `keep_layer_dirs` (containers') uses.
        Returns (blobs removed, layers removed)."""
        with self.locked():
            remove_tree(self.cache_dir)
            roots = set(self.tags().values()) | keep_manifests
            blobs: set[str] = set()
            layer_dirs = set(keep_layer_dirs)
            for digest in roots:
                if not self.has_blob(digest):
                    continue
                image = self.load_image(digest)
                blobs |= {digest, image.config_digest}
                blobs |= {d.digest for d in image.manifest.layers}
                layer_dirs |= {str(self.layer_path(c)) for c in chain_ids(image.diff_ids)}
            removed_blobs = removed_layers = 0
            for path in self.blobs.iterdir():
                if "sha256:" + path.name not in blobs:
                    path.unlink()
                    removed_blobs += 1
            for path in self.layers_dir.iterdir():
                if str(path) not in layer_dirs:
                    remove_tree(path)
                    removed_layers += 1
            if self.sources_dir.is_dir():
                for path in self.sources_dir.iterdir():
                    if "sha256:" + path.name not in blobs:
                        path.unlink()
            self.ensure()
        return removed_blobs, removed_layers

    # -- the build cache -----------------------------------------------------------------

    def cache_get(self, key: str) -> str | None:
        try:
            digest = (self.cache_dir / key).read_text().strip()
        except FileNotFoundError:
            return None
        return digest if self.has_blob(digest) else None

    def cache_put(self, key: str, manifest_digest: str) -> None:
        self.ensure()
        _write_atomic(self.cache_dir / key, manifest_digest.encode())


def remove_tree(path: Path) -> None:
    """Removes a tree that may hold read-only directories (unpacked layers)."""
    def onerror(func: object, p: str, exc: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)

    shutil.rmtree(path, onerror=onerror)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A file written aside and renamed into place when the block ends: a failure (or a
    crash) leaves the old file or none, never half a new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()
