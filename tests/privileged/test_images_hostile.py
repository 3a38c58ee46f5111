"""Builds given hostile or broken input: a context symlink pointing out of it, a bad --chmod,
an ADD tar reaching outside its destination.  Each is a real build (COPY into scratch, so no
container is started); each failure is one line."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

from supervisor.images.store import Store
from supervisor.paths import ProjectPaths


def build(ctx: Path, containerfile: str) -> subprocess.CompletedProcess[str]:
    (ctx / "Containerfile").write_text(containerfile)
    return subprocess.run([sys.executable, "-m", "supervisor", "build", "-t", "t:1", str(ctx)],
                          capture_output=True, text=True, timeout=60)


def layer_members(digest: str) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(Store.default().blob_path(digest)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_copy_of_a_symlink_out_of_the_context_copies_the_symlink(
        tmp_path: Path, project: ProjectPaths) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret\n")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "evil").symlink_to(outside)
    r = build(ctx, "FROM scratch\nCOPY evil /a/\nCOPY . /all/\n")
    assert r.returncode == 0, r.stderr
    image = Store.default().resolve("t:1")
    for desc in image.manifest.layers:
        members = layer_members(desc.digest)
        assert not any(name.endswith("secret") for name in members), sorted(members)
    first = layer_members(image.manifest.layers[0].digest)
    assert first["a/evil"].issym() and first["a/evil"].linkname == str(outside)
    second = layer_members(image.manifest.layers[1].digest)
    assert second["all/evil"].issym()


def test_a_bad_chmod_and_a_hostile_add_tar_are_one_line(
        tmp_path: Path, project: ProjectPaths) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "app.txt").write_text("x\n")
    r = build(ctx, "FROM scratch\nCOPY --chmod=zz app.txt /\n")
    assert (r.returncode, r.stderr.count("\n")) == (2, 1), r.stderr
    assert "Containerfile:2: --chmod: expected an octal mode such as 755, got 'zz'" in r.stderr
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../../escaped")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"x\n"))
    (ctx / "evil.tar").write_bytes(buf.getvalue())
    r = build(ctx, "FROM scratch\nADD evil.tar /x/\n")
    assert (r.returncode, r.stderr.count("\n")) == (1, 1), r.stderr
    assert "Containerfile:2: ADD evil.tar: " in r.stderr and "outside" in r.stderr
    assert not (tmp_path / "escaped").exists()
