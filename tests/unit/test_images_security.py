"""Hostile images and racing containers, without root: a layer tar cannot reach outside its
folder, a layer must be the tar its image's DiffID names, unpacked layers are out of other
users' reach, and a layer written from a changing upper dir reads only what it walked."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from supervisor.errors import SupervisorError, UsageError
from supervisor.images import archive, auth, layers, oci, transfer
from supervisor.images.context import Context
from supervisor.images.reference import parse
from supervisor.images.registry import RegistryError
from supervisor.images.store import ImageError, Store


def tar_bytes(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in entries:
            if info.isreg():
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644,
          ) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


def test_a_hard_link_through_a_symlink_cannot_reach_the_host(tmp_path: Path) -> None:
    victim = tmp_path / "victim"  # stands in for /etc/shadow
    victim.write_text("secret\n")
    victim.chmod(0o600)
    blob = tmp_path / "blob.tar"
    blob.write_bytes(tar_bytes(
        (entry("s", tarfile.SYMTYPE, str(tmp_path)), b""),
        (entry("x", tarfile.LNKTYPE, "s/victim", mode=0o4777), b"")))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(layers.LayerError, match="x: a hard link to s/victim, which is not a "
                                                "file of this layer"):
        layers.unpack(blob, oci.OCI_LAYER_TAR, dest)
    st = os.stat(victim)
    assert (st.st_mode & 0o7777, st.st_nlink) == (0o600, 1)
    assert not os.path.lexists(dest / "x")


def test_a_hard_link_to_a_symlink_or_a_missing_file_is_refused(tmp_path: Path) -> None:
    for i, entries in enumerate([
            [(entry("s", tarfile.SYMTYPE, "/etc/passwd"), b""),
             (entry("x", tarfile.LNKTYPE, "s"), b"")],
            [(entry("x", tarfile.LNKTYPE, "nothing"), b"")]]):
        blob = tmp_path / f"{i}.tar"
        blob.write_bytes(tar_bytes(*entries))
        dest = tmp_path / f"dest{i}"
        dest.mkdir()
        with pytest.raises(layers.LayerError, match="which is not a file of this layer"):
            layers.unpack(blob, oci.OCI_LAYER_TAR, dest)


def test_a_directory_replaced_by_a_symlink_keeps_its_target_untouched(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.utime(outside, (1_000_000, 1_000_000))
    d = entry("d", tarfile.DIRTYPE, mode=0o755)
    d.mtime = 12345
    blob = tmp_path / "blob.tar"
    blob.write_bytes(tar_bytes((d, b""), (entry("d", tarfile.SYMTYPE, str(outside)), b"")))
    dest = tmp_path / "dest"
    dest.mkdir()
    layers.unpack(blob, oci.OCI_LAYER_TAR, dest)
    assert os.readlink(dest / "d") == str(outside)
    assert os.stat(outside).st_mtime == 1_000_000


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def oci_archive(layer: bytes, claimed_diff_id: str, name: str) -> io.BytesIO:
    cfg = oci.encode(oci.ImageConfig(rootfs=oci.RootFS(diff_ids=[claimed_diff_id]),
                                     config=oci.ContainerConfig(Cmd=["/hello"])))
    man = oci.encode(oci.Manifest(
        config=oci.Descriptor(mediaType=oci.OCI_CONFIG, digest=sha(cfg), size=len(cfg)),
        layers=[oci.Descriptor(mediaType=oci.OCI_LAYER_TAR, digest=sha(layer),
                               size=len(layer))]))
    idx = oci.encode(oci.Index(manifests=[oci.Descriptor(
        mediaType=oci.OCI_MANIFEST, digest=sha(man), size=len(man),
        annotations={oci.CONTAINERD_NAME: name, oci.REF_NAME: "1"})]))
    files = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", idx)]
    files += [(f"blobs/sha256/{sha(x)[7:]}", x) for x in (cfg, man, layer)]
    return io.BytesIO(tar_bytes(*((entry(n), d) for n, d in files)))


def test_a_layer_claiming_another_diff_id_poisons_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "images")
    good = tar_bytes((entry("hello"), b"trusted\n"))
    evil = tar_bytes((entry("hello"), b"EVIL\n"))
    archive.load(store, oci_archive(evil, sha(good), "docker.io/evil/x:1"), "evil.tar")
    with pytest.raises(layers.LayerError, match=f"content does not match the image's "
                                                f"diff_id {sha(good)}, got {sha(evil)}"):
        store.unpacked(store.resolve("evil/x:1"))
    assert list(store.layers_dir.iterdir()) == []
    assert list(store.tmp.iterdir()) == []
    archive.load(store, oci_archive(good, sha(good), "docker.io/library/trusted:1"), "good.tar")
    [unpacked] = store.unpacked(store.resolve("trusted:1"))
    assert (unpacked / "hello").read_text() == "trusted\n"


def test_diff_id_is_of_the_uncompressed_tar_for_gzip_layers(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x\n")
    written = layers.write_layer(tree, tmp_path / "out")
    dest = tmp_path / "dest"
    dest.mkdir()
    layers.unpack(written.path, written.media_type, dest, written.diff_id)
    assert (dest / "f").read_text() == "x\n"


def test_unpacked_layers_are_out_of_other_users_reach(tmp_path: Path) -> None:
    root = tmp_path / "images"
    for d in (root, root / "layers", root / "tmp"):  # a store made before: 0755
        d.mkdir(mode=0o755)
        d.chmod(0o755)
    store = Store(root)
    store.ensure()
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o711
    assert stat.S_IMODE(os.stat(store.layers_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.tmp).st_mode) == 0o700
    fresh = Store(tmp_path / "fresh" / "images")
    fresh.ensure()
    assert stat.S_IMODE(os.stat(fresh.layers_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(fresh.root).st_mode) == 0o711


def test_a_file_swapped_for_a_symlink_while_written_is_not_followed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A running container replaces a file of its upper dir by a symlink to a host file
    between the walk and the read (the swap is made at the last step before the read)."""
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "f").write_text("own content")  # as long as the secret
    original = tarfile.TarFile.gettarinfo

    def swapping(self: tarfile.TarFile, *a: object, **kw: object) -> tarfile.TarInfo | None:
        info = original(self, *a, **kw)  # type: ignore[arg-type]
        if (upper / "f").is_file() and not (upper / "f").is_symlink():
            (upper / "f").unlink()
            (upper / "f").symlink_to(secret)
        return info

    monkeypatch.setattr(tarfile.TarFile, "gettarinfo", swapping)
    written = layers.write_layer(upper, tmp_path / "out", compress=False)
    with tarfile.open(written.path) as tar:
        member = tar.extractfile("f")
        assert member is not None
        assert member.read() == b"own content"


def test_a_file_replaced_before_it_is_read_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("one")
    st = os.lstat(tmp_path / "f")
    (tmp_path / "f").unlink()
    (tmp_path / "f").symlink_to("/etc/passwd")
    with tarfile.open(fileobj=io.BytesIO(), mode="w") as tar, \
            pytest.raises(layers.LayerError, match="f: replaced while the layer was being "
                                                   "written"):
        layers._add(tar, "f", tmp_path / "f", st)


def test_copy_sources_stay_inside_the_context(tmp_path: Path) -> None:
    """`ln -s /etc evil`: `COPY evil` copies the symlink, `COPY evil/passwd` looks inside the
    context, and the cache key covers the symlink, not what it points to."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host")
    ctx = tmp_path / "ctx"
    (ctx / "real").mkdir(parents=True)
    (ctx / "real/file").write_text("mine")
    (ctx / "evil").symlink_to(outside)
    (ctx / "inner").symlink_to("real")
    c = Context(ctx)
    assert c.select(["evil"], "f") == [(ctx / "evil", "evil")]
    assert c.select(["evi*"], "f") == [(ctx / "evil", "evil")]
    with pytest.raises(UsageError, match="evil/secret: no such file in the build context"):
        c.select(["evil/secret"], "f")
    assert c.select(["inner/file"], "f") == [(ctx / "real/file", "file")]
    [(root, name)] = c.select(["."], "f")
    assert name == "" and [rel for _, rel in c.files_under(root)] == [
        "evil", "inner", "real", "real/file"]
    before = c.digest(c.select(["evil"], "f"))
    (outside / "secret").write_text("changed")
    assert c.digest(c.select(["evil"], "f")) == before


@pytest.fixture
def hostile_registry() -> Iterator[tuple[str, dict[str, tuple[int, dict[str, str], bytes]]]]:
    """A registry on loopback answering each path with what the test put in `routes`
    (status, headers, body); a path not there is a 404."""
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers, body = routes.get(urlparse(self.path).path, (404, {}, b""))
            self.send_response(status)
            for k, v in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(k, v)
            self.end_headers()
            with contextlib.suppress(OSError):  # the client may stop reading
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", routes
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_token_that_is_not_json_is_one_line(
        tmp_path: Path,
        hostile_registry: tuple[str, dict[str, tuple[int, dict[str, str], bytes]]]) -> None:
    address, routes = hostile_registry
    routes["/v2/"] = (401, {"WWW-Authenticate": f'Bearer realm="http://{address}/token"'}, b"")
    routes["/token"] = (200, {"Content-Type": "text/html"}, b"<html>login</html>")
    with pytest.raises(RegistryError, match=rf"^{address}: token from http://{address}/token:"
                                            " not a JSON object$"):
        transfer.pull(Store(tmp_path), parse(f"{address}/app:1"), creds=None,
                      progress=transfer.Progress(io.StringIO()))


def test_a_blob_longer_than_declared_is_cut_off(
        tmp_path: Path,
        hostile_registry: tuple[str, dict[str, tuple[int, dict[str, str], bytes]]]) -> None:
    address, routes = hostile_registry
    layer = sha(b"tiny")
    manifest = oci.encode(oci.Manifest(
        config=oci.Descriptor(mediaType=oci.OCI_CONFIG, digest=sha(b"{}"), size=2),
        layers=[oci.Descriptor(mediaType=oci.OCI_LAYER_TAR, digest=layer, size=4)]))
    routes["/v2/"] = (200, {}, b"")
    routes["/v2/app/manifests/1"] = (200, {"Content-Type": oci.OCI_MANIFEST}, manifest)
    routes[f"/v2/app/blobs/{layer}"] = (200, {}, b"x" * (3 << 20))
    store = Store(tmp_path)
    with pytest.raises(ImageError, match=rf"^{address}/app: blob {layer}: more than the 4 "
                                         "bytes declared$"):
        transfer.pull(store, parse(f"{address}/app:1"), creds=None,
                      progress=transfer.Progress(io.StringIO()))
    assert list(store.tmp.iterdir()) == []


def test_credentials_with_auths_not_an_object_is_one_line(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "dk")}
    (tmp_path / "supervise").mkdir()
    (tmp_path / "supervise/auth.json").write_text('{"auths": ["localhost:5000"]}')
    with pytest.raises(SupervisorError, match=r"auth\.json: auths: expected an object of "
                                              "registries, got list$"):
        auth.lookup("localhost:5000", env)
    with pytest.raises(SupervisorError, match="expected an object of registries"):
        auth.store("localhost:5000", auth.Credentials("a", "b"), env)


def test_a_zstd_layer_without_zstd_is_one_line(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 60)
    monkeypatch.setenv("PATH", str(tmp_path))  # no zstd here
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(layers.LayerError, match=r"^layer blob: cannot run zstd to decompress "
                                                r"it .*install zstd"):
        layers.unpack(blob, oci.OCI_LAYER_ZSTD, dest)
