"""The image store without root: references, layer tars, DiffIDs and ChainIDs, tags."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from supervisor.errors import UsageError
from supervisor.images import containerfile as cf
from supervisor.images import layers, oci
from supervisor.images.context import Context
from supervisor.images.reference import parse
from supervisor.images.store import ImageError, Store, chain_ids


@pytest.mark.parametrize(("text", "full", "familiar"), [
    ("redis", "docker.io/library/redis:latest", "redis:latest"),
    ("redis:7", "docker.io/library/redis:7", "redis:7"),
    ("bitnami/redis:7.2", "docker.io/bitnami/redis:7.2", "bitnami/redis:7.2"),
    ("localhost:5000/app:1", "localhost:5000/app:1", "localhost:5000/app:1"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("quay.io/org/img", "quay.io/org/img:latest", "quay.io/org/img:latest"),
    ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1", "busybox:1"),
    ("myhost:5000/a/b:c", "myhost:5000/a/b:c", "myhost:5000/a/b:c"),
    ("app@sha256:" + "a" * 64, "docker.io/library/app@sha256:" + "a" * 64,
     "app@sha256:" + "a" * 64),
])
def test_reference_grammar(text: str, full: str, familiar: str) -> None:
    ref = parse(text)
    assert str(ref) == full
    assert ref.familiar() == familiar


@pytest.mark.parametrize("bad", ["Redis", "redis:", ":7", "a//b", "redis:7:8", ""])
def test_bad_references_are_one_line(bad: str) -> None:
    with pytest.raises(UsageError, match="expected a reference such as 'redis:7'"):
        parse(bad)


def test_chain_ids_follow_the_spec() -> None:
    a, b, c = ("sha256:" + h * 64 for h in "abc")
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert chain_ids([a, b, c]) == [a, ab, abc]
    assert chain_ids([]) == []


def make_tree(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc/app.conf").write_text("x=1\n")
    (root / "bin").mkdir()
    (root / "bin/tool").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "bin/tool", 0o755)
    os.symlink("tool", root / "bin/alias")
    os.link(root / "bin/tool", root / "bin/hard")


def test_layer_digests_and_diff_id(tmp_path: Path) -> None:
    make_tree(tmp_path / "tree")
    w = layers.write_layer(tmp_path / "tree", tmp_path / "out")
    blob = w.path.read_bytes()
    assert w.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert w.size == len(blob)
    raw = gzip.decompress(blob)
    assert w.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == ["bin", "bin/alias", "bin/hard", "bin/tool", "etc",
                             "etc/app.conf"]
    assert members["bin/alias"].issym() and members["bin/alias"].linkname == "tool"
    assert members["bin/tool"].islnk() or members["bin/hard"].islnk()
    assert members["bin/tool"].mode & 0o777 in (0o755, 0o644)
    # The same tree gives the same blob: gzip without a timestamp, entries sorted.
    again = layers.write_layer(tmp_path / "tree", tmp_path / "out")
    assert again.digest == w.digest


def test_runtime_files_are_left_out(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    for name in ("hostname", "hosts", "resolv.conf"):
        (upper / "etc" / name).write_text("made at start\n")
    (upper / "new").write_text("1")
    w = layers.write_layer(upper, tmp_path, exclude=layers.RUNTIME_FILES, compress=False)
    with tarfile.open(w.path) as tar:
        assert tar.getnames() == ["new"]  # and no empty etc/ either
    assert w.media_type == oci.OCI_LAYER_TAR and w.digest == w.diff_id


def test_unpack_plain_tree_round_trips(tmp_path: Path) -> None:
    make_tree(tmp_path / "tree")
    w = layers.write_layer(tmp_path / "tree", tmp_path / "out")
    dest = tmp_path / "dest"
    dest.mkdir()
    layers.unpack(w.path, w.media_type, dest)
    assert (dest / "etc/app.conf").read_text() == "x=1\n"
    assert os.readlink(dest / "bin/alias") == "tool"
    assert os.stat(dest / "bin/tool").st_ino == os.stat(dest / "bin/hard").st_ino
    assert os.stat(dest / "bin/tool").st_mode & 0o777 == 0o755


def evil_tar(path: Path, *entries: tarfile.TarInfo) -> None:
    with tarfile.open(path, "w") as tar:
        for e in entries:
            tar.addfile(e, io.BytesIO(b"x" * e.size) if e.isreg() else None)


def test_unpack_refuses_escapes(tmp_path: Path) -> None:
    up = tarfile.TarInfo("../outside")
    up.size = 1
    evil_tar(tmp_path / "a.tar", up)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(layers.LayerError, match="outside the layer"):
        layers.unpack(tmp_path / "a.tar", oci.OCI_LAYER_TAR, dest)
    link = tarfile.TarInfo("escape")
    link.type, link.linkname = tarfile.SYMTYPE, "/"
    through = tarfile.TarInfo("escape/etc/passwd")
    through.size = 1
    evil_tar(tmp_path / "b.tar", link, through)
    with pytest.raises(layers.LayerError, match="not a directory"):
        layers.unpack(tmp_path / "b.tar", oci.OCI_LAYER_TAR, dest)


def test_store_tags_in_an_oci_layout(tmp_path: Path) -> None:
    store = Store(tmp_path / "images")
    cfg = oci.ImageConfig(config=oci.ContainerConfig(Cmd=["sh"]))
    cdesc = store.put_json(cfg, oci.OCI_CONFIG)
    mdesc = store.put_json(oci.Manifest(config=cdesc), oci.OCI_MANIFEST)
    store.tag(parse("app:1"), mdesc)
    store.tag(parse("localhost:5000/app:1"), mdesc)
    index = json.loads((tmp_path / "images/index.json").read_text())
    names = [m["annotations"][oci.REF_NAME] for m in index["manifests"]]
    assert names == ["docker.io/library/app:1", "localhost:5000/app:1"]
    assert json.loads((tmp_path / "images/oci-layout").read_text()) == {
        "imageLayoutVersion": "1.0.0"}
    image = store.resolve("app:1")
    assert image.config.config.Cmd == ["sh"] and image.id == cdesc.digest
    assert store.resolve(image.short_id).manifest_digest == mdesc.digest
    assert store.resolve(mdesc.digest).id == cdesc.digest
    [listed] = store.images()
    assert listed.names == ("docker.io/library/app:1", "localhost:5000/app:1")
    assert store.untag(parse("app:1"))
    with pytest.raises(ImageError, match="'app:1': no such image"):
        store.resolve("app:1")


def test_blob_digest_is_verified(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.ensure()
    f = tmp_path / "tmp" / "x"
    f.write_bytes(b"hello")
    with pytest.raises(ImageError, match="does not match"):
        store.adopt_file(f, "sha256:" + "0" * 64)
    assert not f.exists()


# -- the Containerfile language and the build context ---------------------------------------

def test_containerfile_lines_continuations_and_forms() -> None:
    text = ("# comment\nARG BASE=scratch\nFROM $BASE\n\nRUN echo a \\\n  # inside\n"
            "    && echo b\nCOPY --chown=1:2 a b /dst/\nCMD [\"sh\", \"-c\", \"x\"]\n"
            "ENTRYPOINT not [json\n")
    ins = cf.parse(text, "Containerfile")
    assert [(i.line, i.name) for i in ins] == [(2, "ARG"), (3, "FROM"), (5, "RUN"),
                                               (8, "COPY"), (9, "CMD"), (10, "ENTRYPOINT")]
    assert ins[2].args == "echo a && echo b"
    assert ins[3].flags == {"chown": "1:2"} and ins[3].args == "a b /dst/"
    assert ins[4].exec_form == ["sh", "-c", "x"]
    assert ins[5].exec_form is None  # not JSON: the shell form


@pytest.mark.parametrize(("text", "message"), [
    ("RUN x\n", "Containerfile:1: expected FROM first"),
    ("FROM scratch\nFETCH x\n", "Containerfile:2: unknown instruction 'FETCH'"),
    ("FROM scratch\nHEALTHCHECK CMD true\n", "Containerfile:2: HEALTHCHECK is not supported"),
    ("FROM scratch\nCOPY --from=x a b\n", "Containerfile:2: COPY --from is not supported"),
    ("FROM scratch\nWORKDIR\n", "Containerfile:2: WORKDIR needs an argument"),
])
def test_containerfile_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(cf.ContainerfileError, match=message):
        cf.parse(text, "Containerfile")


def test_variables_and_words() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert cf.expand("$A ${A} ${EMPTY:-d} ${A:+set} ${NO:+x}'$A' \\$A", env) == \
        "1 1 d set '$A' \\$A"
    assert cf.words('K="a b" L=$A \'M=$A\'', env) == ["K=a b", "L=1", "M=$A"]
    [env_ins] = [i for i in cf.parse("FROM scratch\nENV X=1 Y=\"two words\"\n")
                 if i.name == "ENV"]
    assert cf.pairs(env_ins, {}, "f") == [("X", "1"), ("Y", "two words")]
    [legacy] = [i for i in cf.parse("FROM scratch\nENV X hello world\n") if i.name == "ENV"]
    assert cf.pairs(legacy, {}, "f") == [("X", "hello world")]


def test_dockerignore_and_content_digest(tmp_path: Path) -> None:
    (tmp_path / "src/sub").mkdir(parents=True)
    (tmp_path / "src/a.py").write_text("a")
    (tmp_path / "src/b.log").write_text("b")
    (tmp_path / "src/sub/c.log").write_text("c")
    (tmp_path / "src/sub/keep.log").write_text("k")
    (tmp_path / ".dockerignore").write_text("# logs\n**/*.log\n!src/sub/keep.log\n")
    ctx = Context(tmp_path)
    [(src, name)] = ctx.select(["src"], "f")
    assert name == "" and [rel for _, rel in ctx.files_under(src)] == [
        "a.py", "sub", "sub/keep.log"]
    with pytest.raises(UsageError, match=r"src/b\.log: no such file in the build context"):
        ctx.select(["src/b.log"], "f")
    with pytest.raises(UsageError, match="outside the build context"):
        ctx.select(["../x"], "f")
    before = ctx.digest(ctx.select(["src"], "f"))
    (tmp_path / "src/b.log").write_text("ignored change")
    os.utime(tmp_path / "src/a.py", (1, 1))  # times do not count
    assert ctx.digest(ctx.select(["src"], "f")) == before
    (tmp_path / "src/a.py").write_text("A")
    assert ctx.digest(ctx.select(["src"], "f")) != before
