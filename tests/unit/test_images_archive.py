"""`save` and `load` without root: both archive formats, archives made the way other tools make
them, and the one-line refusals of broken or hostile archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from supervisor.images import archive, layers, oci
from supervisor.images.reference import parse
from supervisor.images.store import Image, ImageError, Store


def make_image(store: Store, tmp: Path, name: str = "app:1") -> Image:
    """Two layers (gzip'd) and a config, tagged `name`."""
    written = []
    for i, files in enumerate(({"bin/tool": b"#!/bin/sh\n"}, {"etc/app.conf": b"x=1\n"})):
        tree = tmp / f"tree{i}"
        for rel, data in files.items():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_bytes(data)
        written.append(layers.write_layer(tree, store.tmp))
    config = oci.ImageConfig(created="2026-01-01T00:00:00Z", config=oci.ContainerConfig(
        Cmd=["sh"]), rootfs=oci.RootFS(diff_ids=[w.diff_id for w in written]))
    store.ensure()
    image = store.write_image([store.adopt_layer(w) for w in written], config)
    store.tag(parse(name), store.manifest_descriptor(image))
    return image


def blobs_of(image: Image) -> set[str]:
    return {image.manifest_digest, image.config_digest, *(d.digest for d in image.manifest.layers)}


def round_trip(src: Store, dest: Store, names: list[str], **kw: tuple[str, ...]
               ) -> list[archive.Loaded]:
    items = [(src.resolve(n), parse(n)) for n in names]
    buf = io.BytesIO()
    archive.save(src, items, buf, **kw)
    buf.seek(0)
    return archive.load(dest, buf, "test.tar")


def test_both_formats_in_one_archive_keep_every_digest(tmp_path: Path) -> None:
    src = Store(tmp_path / "src")
    image = make_image(src, tmp_path)
    src.tag(parse("localhost:5000/app:1"), src.manifest_descriptor(image))
    buf = io.BytesIO()
    archive.save(src, [(src.resolve("app:1"), parse("app:1")),
                       (src.resolve("localhost:5000/app:1"), parse("localhost:5000/app:1"))],
                 buf)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        names = tar.getnames()
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert names[:4] == ["oci-layout", "index.json", "manifest.json", "repositories"]
    assert [m["annotations"] for m in index["manifests"]] == [
        {oci.CONTAINERD_NAME: "docker.io/library/app:1", oci.REF_NAME: "1"},
        {oci.CONTAINERD_NAME: "localhost:5000/app:1", oci.REF_NAME: "1"}]
    assert manifest == [{"Config": "blobs/sha256/" + image.config_digest[7:],
                         "RepoTags": ["app:1", "localhost:5000/app:1"],
                         "Layers": ["blobs/sha256/" + d.digest[7:]
                                    for d in image.manifest.layers]}]
    dest = Store(tmp_path / "dest")
    [loaded] = archive.load(dest, io.BytesIO(buf.getvalue()), "test.tar")
    assert loaded.image.manifest_digest == image.manifest_digest
    assert {str(n) for n in loaded.names} == {"docker.io/library/app:1",
                                               "localhost:5000/app:1"}
    assert {"sha256:" + p.name for p in dest.blobs.iterdir()} == blobs_of(image)
    assert dest.tags() == src.tags()


@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive"])
def test_each_format_alone_keeps_every_digest(tmp_path: Path, fmt: str) -> None:
    src = Store(tmp_path / "src")
    image = make_image(src, tmp_path)
    dest = Store(tmp_path / "dest")
    [loaded] = round_trip(src, dest, ["app:1"], formats=(fmt,))
    # From manifest.json alone the manifest is rebuilt, the same as ours was written.
    assert loaded.image.manifest_digest == image.manifest_digest
    assert {"sha256:" + p.name for p in dest.blobs.iterdir()} == blobs_of(image)
    assert dest.resolve("app:1").id == image.id


def add(tar: tarfile.TarFile, name: str, data: bytes = b"", *, link: str | None = None,
        ) -> None:
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
    else:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if link is None else None)


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            add(tar, name, data)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_a_classic_docker_save_archive_loads(tmp_path: Path) -> None:
    """Older Docker and skopeo's docker-archive: `<id>/layer.tar` links, `<hex>.json` config,
    uncompressed layers; one layer gzip'd, as `docker load` also accepts."""
    plain = layer_tar({"a": b"1"})
    packed = layer_tar({"b": b"2"})
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [sha(plain), sha(packed)]}}).encode()
    gz = gzip.compress(packed, mtime=0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        add(tar, "aaa.tar", plain)
        add(tar, "l1/layer.tar", link="../aaa.tar")
        add(tar, "l2/layer.tar", gz)
        add(tar, "cfg.json", config)
        add(tar, "manifest.json", json.dumps([{
            "Config": "cfg.json", "RepoTags": ["docker.io/library/busy:1"],
            "Layers": ["l1/layer.tar", "l2/layer.tar"], "LayerSources": {}}]).encode())
    store = Store(tmp_path / "s")
    [loaded] = archive.load(store, io.BytesIO(buf.getvalue()), "old.tar")
    assert [str(n) for n in loaded.names] == ["docker.io/library/busy:1"]
    image = store.resolve("busy:1")
    assert image.id == sha(config)
    assert [(d.mediaType, d.digest) for d in image.manifest.layers] == [
        (oci.OCI_LAYER_TAR, sha(plain)), (oci.OCI_LAYER_GZIP, sha(gz))]


def test_a_nested_index_picks_this_machine(tmp_path: Path) -> None:
    """skopeo and buildah write an index of platforms; the one for this machine is loaded,
    and a bare tag in ref.name names no repository."""
    src = Store(tmp_path / "src")
    image = make_image(src, tmp_path)
    desc = src.manifest_descriptor(image)
    other = "arm" if oci.architecture() != "arm" else "amd64"
    nested = oci.Index(manifests=[
        oci.Descriptor(mediaType=desc.mediaType, digest="sha256:" + "0" * 64, size=1,
                       platform=oci.Platform(architecture=other, os="linux")),
        msgspec_replace(desc, oci.Platform(architecture=oci.architecture(), os="linux"))])
    nested_bytes = oci.encode(nested)
    src.put_bytes(nested_bytes)
    top = oci.Index(manifests=[oci.Descriptor(
        mediaType=oci.OCI_INDEX, digest=sha(nested_bytes), size=len(nested_bytes),
        annotations={oci.REF_NAME: "latest"})])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add(tar, "index.json", oci.encode(top))
        for digest in [*blobs_of(image), sha(nested_bytes)]:
            add(tar, "blobs/sha256/" + digest[7:], src.read_blob(digest))
    dest = Store(tmp_path / "dest")
    [loaded] = archive.load(dest, io.BytesIO(buf.getvalue()), "multi.tar")
    assert loaded.image.manifest_digest == image.manifest_digest and loaded.names == ()


def msgspec_replace(desc: oci.Descriptor, platform: oci.Platform) -> oci.Descriptor:
    import msgspec

    return msgspec.structs.replace(desc, platform=platform)


def hostile(tmp_path: Path, build: str) -> bytes:
    buf = io.BytesIO()
    if build == "not a tar":
        return b"hello, I am not an archive" * 40
    with tarfile.open(fileobj=buf, mode="w") as tar:
        if build == "escape":
            add(tar, "../../etc/evil", b"x")
        elif build == "neither":
            add(tar, "README", b"x")
        elif build == "tampered":
            src = Store(tmp_path / "src")
            image = make_image(src, tmp_path)
            add(tar, "oci-layout", b"{}")
            add(tar, "index.json", oci.encode(oci.Index(
                manifests=[src.manifest_descriptor(image)])))
            for digest in blobs_of(image):
                data = src.read_blob(digest)
                if digest == image.config_digest:
                    data = data.replace(b'"sh"', b'"rm"')
                add(tar, "blobs/sha256/" + digest[7:], data)
        elif build == "wrong diff_id":
            plain = layer_tar({"a": b"1"})
            config = json.dumps({"rootfs": {"type": "layers",
                                            "diff_ids": ["sha256:" + "1" * 64]}}).encode()
            add(tar, "l.tar", plain)
            add(tar, "c.json", config)
            add(tar, "manifest.json", json.dumps(
                [{"Config": "c.json", "Layers": ["l.tar"]}]).encode())
    return buf.getvalue()


@pytest.mark.parametrize(("build", "message"), [
    ("not a tar", "bad.tar: not a readable tar archive"),
    ("escape", "bad.tar: ../../etc/evil: a path outside the archive"),
    ("neither", "bad.tar: neither an OCI archive .* nor a `docker save` archive"),
    ("tampered", "bad.tar: blob sha256:[0-9a-f]+: content does not match"),
    ("wrong diff_id", "bad.tar: l.tar: content does not match the config's diff_id"),
])
def test_broken_archives_are_one_line_and_leave_nothing(tmp_path: Path, build: str,
                                                        message: str) -> None:
    store = Store(tmp_path / "s")
    with pytest.raises(ImageError, match=message):
        archive.load(store, io.BytesIO(hostile(tmp_path, build)), "bad.tar")
    assert store.tags() == {} and list(store.tmp.iterdir()) == []
    assert not (tmp_path / "etc").exists()
