"""The OCI image formats as msgspec Structs: descriptors, the index, manifests, configs.

Field names are the spec's (``mediaType``, ``Cmd``...).  Unknown fields are ignored, not
refused, unlike our own shapes: the image spec requires it, and Docker's and Podman's
configs carry fields of their own.  A blob is never re-encoded once stored (its digest is its
name), so decoding leniently loses nothing.
"""

from __future__ import annotations

import msgspec

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"

MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
GZIP_LAYERS = (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP)
TAR_LAYERS = (OCI_LAYER_TAR, DOCKER_LAYER_TAR)

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
# A layer list that sits on the `host` image (a base made on each machine, never a blob).
BASE_ANNOTATION = "io.supervise.image.base"


# Fields the spec requires have a default_factory: omit_defaults never omits those (a plain
# default would be left out of the JSON).
def _layers() -> str:
    return "layers"


def _linux() -> str:
    return "linux"


def _two() -> int:
    return 2


def _none() -> list[str]:
    return []


def _no_descriptors() -> list[Descriptor]:  # Descriptor: defined below, called later
    return []


class Platform(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    architecture: str
    os: str
    variant: str | None = None


class Descriptor(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    mediaType: str  # the spec's names, not Python's
    digest: str
    size: int
    annotations: dict[str, str] | None = None
    platform: Platform | None = None


class Index(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    schemaVersion: int = msgspec.field(default_factory=_two)
    mediaType: str | None = msgspec.field(default_factory=lambda: OCI_INDEX)
    manifests: list[Descriptor] = msgspec.field(default_factory=_no_descriptors)
    annotations: dict[str, str] | None = None


class Manifest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    schemaVersion: int = msgspec.field(default_factory=_two)
    mediaType: str | None = msgspec.field(default_factory=lambda: OCI_MANIFEST)
    config: Descriptor
    layers: list[Descriptor] = msgspec.field(default_factory=_no_descriptors)
    annotations: dict[str, str] | None = None


class ContainerConfig(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The defaults an image gives its containers (the config's ``config``)."""

    User: str | None = None
    ExposedPorts: dict[str, dict[str, object]] | None = None
    Env: list[str] | None = None
    Entrypoint: list[str] | None = None
    Cmd: list[str] | None = None
    Volumes: dict[str, dict[str, object]] | None = None
    WorkingDir: str | None = None
    Labels: dict[str, str] | None = None
    StopSignal: str | None = None


class RootFS(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    type: str = msgspec.field(default_factory=_layers)
    diff_ids: list[str] = msgspec.field(default_factory=_none)


class History(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool | None = None


class ImageConfig(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    created: str | None = None
    author: str | None = None
    architecture: str = msgspec.field(default_factory=lambda: architecture())
    os: str = msgspec.field(default_factory=_linux)
    config: ContainerConfig = ContainerConfig()
    rootfs: RootFS = msgspec.field(default_factory=RootFS)
    history: list[History] = []


def decode_config(data: bytes) -> ImageConfig:
    return msgspec.json.decode(data, type=ImageConfig)


def decode_manifest(data: bytes) -> Manifest:
    return msgspec.json.decode(data, type=Manifest)


def decode_index(data: bytes) -> Index:
    return msgspec.json.decode(data, type=Index)


def encode(value: msgspec.Struct) -> bytes:
    return msgspec.json.encode(value)


def architecture() -> str:
    """This machine's architecture in the spec's (Go's) words."""
    import platform

    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine)
