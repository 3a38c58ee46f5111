"""Images for real: whiteouts on disk, builds with RUN in containers, the cache, image
defaults in containers.  Each test names the acceptance point of issue 8 it shows."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from supervisor.images import layers, oci
from supervisor.images.store import Store
from supervisor.paths import ProjectPaths


def sv(*args: str, cwd: Path | None = None, timeout: float = 60,
       ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supervisor", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def ok(*args: str, cwd: Path | None = None) -> str:
    r = sv(*args, cwd=cwd)
    assert r.returncode == 0, f"supervise {' '.join(args)}: {r.stdout}{r.stderr}"
    return r.stdout


@pytest.fixture
def context(tmp_path: Path, busybox_rootfs: Path, project: ProjectPaths) -> Path:
    """A build context holding the busybox rootfs, for `COPY rootfs/ /` into scratch."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copytree(busybox_rootfs, ctx / "rootfs", symlinks=True)
    return ctx


APP = """\
FROM scratch
COPY rootfs/ /
RUN echo built > /built && mkdir -p /data
COPY app.txt /app/
ENV GREETING=hello
WORKDIR /app
CMD ["sh", "-c", "echo $GREETING; cat app.txt; cat /built"]
"""


def test_whiteouts_round_trip_between_tar_and_overlay(tmp_path: Path) -> None:
    """OCI whiteouts unpack to overlayfs's (char 0/0, trusted.overlay.opaque) and back."""
    src = tmp_path / "a.tar"
    with tarfile.open(src, "w") as tar:
        for name, kind in (("etc", tarfile.DIRTYPE), ("etc/.wh.passwd", tarfile.REGTYPE),
                           ("var", tarfile.DIRTYPE), ("var/.wh..wh..opq", tarfile.REGTYPE),
                           ("var/keep", tarfile.REGTYPE)):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            tar.addfile(info)
    dest = tmp_path / "layer"
    dest.mkdir()
    layers.unpack(src, oci.OCI_LAYER_TAR, dest)
    st = os.lstat(dest / "etc/passwd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert layers.is_opaque(dest / "var") and (dest / "var/keep").exists()
    assert not (dest / "etc/.wh.passwd").exists()
    back = layers.write_layer(dest, tmp_path / "out", compress=False)
    with tarfile.open(back.path) as tar:
        names = tar.getnames()
    assert names == ["etc", "etc/.wh.passwd", "var", "var/.wh..wh..opq", "var/keep"]


def test_build_run_and_cache(context: Path) -> None:
    """Acceptance 1: FROM scratch + COPY of a busybox rootfs, RUN, COPY, ENV, CMD; run it;
    a rebuild uses the cache for every step; a changed file rebuilds from its COPY on."""
    (context / "Containerfile").write_text(APP)
    (context / "app.txt").write_text("version 1\n")
    (context / "notes.tmp").write_text("ignored\n")
    (context / ".dockerignore").write_text("*.tmp\n")
    first = ok("build", "-t", "app:1", str(context))
    assert "STEP 7/7: CMD" in first and "Using cache" not in first
    assert ok("run", "--rm", "app:1") == "hello\nversion 1\nbuilt\n"
    # Image defaults under the container's own: WORKDIR, ENV, then -e and -w win.
    assert ok("run", "--rm", "-e", "GREETING=hi", "-w", "/", "app:1", "sh", "-c",
              "echo $GREETING $PWD; ls /app") == "hi /\napp.txt\n"

    again = ok("build", "-t", "app:1", str(context))
    assert again.count("--> Using cache") == 6  # every step after FROM
    assert again.splitlines()[-1] == first.splitlines()[-1]  # the same image ID

    (context / "app.txt").write_text("version 2\n")
    (context / "notes.tmp").write_text("changed, but ignored\n")
    third = ok("build", "-t", "app:2", str(context))
    steps = third.split("STEP ")[1:]
    cached = ["Using cache" in s for s in steps]
    assert cached == [False, True, True, False, False, False, False]  # FROM never "cached"
    assert ok("run", "--rm", "app:2") == "hello\nversion 2\nbuilt\n"
    assert ok("run", "--rm", "app:1") == "hello\nversion 1\nbuilt\n"  # still there


def test_file_deleted_in_run_step(context: Path) -> None:
    """Acceptance 2: deleted in a RUN step -> absent in the image's containers, present in
    its parent's; the layer carries an OCI whiteout."""
    (context / "Containerfile").write_text("FROM scratch\nCOPY rootfs/ /\n")
    ok("build", "-t", "base:1", str(context))
    (context / "Containerfile").write_text("FROM base:1\nRUN rm /bin/vi && rm -r /var/log\n")
    ok("build", "-t", "child:1", str(context))
    assert sv("run", "--rm", "child:1", "ls", "/bin/vi").returncode == 1
    assert sv("run", "--rm", "child:1", "ls", "/var/log").returncode == 1
    assert ok("run", "--rm", "base:1", "ls", "/bin/vi") == "/bin/vi\n"
    store = Store.default()
    child = store.resolve("child:1")
    top = child.manifest.layers[-1]
    with tarfile.open(store.blob_path(top.digest)) as tar:
        names = tar.getnames()
    assert "bin/.wh.vi" in names and "var/.wh.log" in names
    assert "etc/hostname" not in names  # written at start, never part of an image


def test_run_steps_have_a_network_unless_told(context: Path) -> None:
    """RUN gets a private network with outbound access (docker build's default): eth0, a
    route out and the stack's name server; `--network none` leaves loopback alone.  Nothing
    is contacted beyond the build's own namespace."""
    (context / "Containerfile").write_text(
        "FROM scratch\nCOPY rootfs/ /\nRUN cat /proc/net/route /etc/resolv.conf > /net\n")
    ok("build", "-t", "net:1", str(context))
    seen = ok("run", "--rm", "--network", "none", "net:1", "cat", "/net")
    assert "eth0\t00000000" in seen  # the default route, via eth0
    assert "nameserver 10.88.0.1" in seen
    ok("build", "--no-cache", "--network", "none", "-t", "net:2", str(context))
    seen = ok("run", "--rm", "--network", "none", "net:2", "cat", "/net")
    assert "eth0" not in seen


def test_a_new_volume_starts_with_the_images_content(context: Path) -> None:
    """Docker's rule: an image's VOLUME is seeded from the image, layers merged (a file
    deleted in a later layer is not there); a reused volume is left as it is."""
    (context / "Containerfile").write_text(
        "FROM scratch\nCOPY rootfs/ /\n"
        "RUN mkdir -p /data/sub && echo one > /data/f && echo gone > /data/old && "
        "ln -s /etc /data/link && chmod 750 /data\n"
        "RUN echo two > /data/sub/g && rm /data/old\n"
        "VOLUME /data\n")
    ok("build", "-t", "seeded:1", str(context))
    out = ok("run", "--rm", "seeded:1", "sh", "-c",
             "cat /data/f /data/sub/g; ls /data; readlink /data/link; stat -c %a /data")
    assert out == "one\ntwo\nf\nlink\nsub\n/etc\n750\n"
    # a path removed in a later layer seeds nothing from below it
    (context / "Containerfile").write_text(
        "FROM scratch\nCOPY rootfs/ /\nRUN mkdir /data && echo old > /data/old\n"
        "RUN rm -rf /data\nRUN mkdir /data && echo new > /data/new\nVOLUME /data\n")
    ok("build", "-t", "seeded:2", str(context))
    assert ok("run", "--rm", "seeded:2", "ls", "/data") == "new\n"
    (context / "Containerfile").write_text(
        "FROM scratch\nCOPY rootfs/ /\nRUN mkdir /data && echo old > /data/old\n"
        "RUN rm -rf /data\nVOLUME /data\n")
    ok("build", "-t", "seeded:3", str(context))
    assert ok("run", "--rm", "seeded:3", "ls", "-A", "/data") == ""


def test_an_image_of_sixty_layers_builds_and_runs(context: Path) -> None:
    """Past ~40 layers mount(2)'s one page of options is full: the layers then go one by
    one through the new mount API (COPY's overlay in the build, and the container's)."""
    for i in range(60):
        (context / f"f{i}").write_text(f"{i}\n")
    steps = "".join(f"COPY f{i} /layers/\n" for i in range(60))
    (context / "Containerfile").write_text("FROM scratch\nCOPY rootfs/ /\n" + steps)
    ok("build", "-t", "deep:1", str(context))
    assert len(Store.default().resolve("deep:1").manifest.layers) == 61
    out = ok("run", "--rm", "deep:1", "sh", "-c", "cat /layers/f0 /layers/f59; ls /layers | wc -l")
    assert out.split() == ["0", "59", "60"]


def test_failing_step_names_its_line(context: Path) -> None:
    (context / "Containerfile").write_text(
        "FROM scratch\nCOPY rootfs/ /\n\nRUN echo about to fail; exit 3\n")
    r = sv("build", "-t", "bad:1", str(context))
    assert r.returncode == 1
    assert "about to fail" in r.stdout  # the step's output is kept
    assert r.stderr.strip().endswith("Containerfile:4: RUN exited with code 3")


def test_image_config_in_a_stack_container(context: Path, project: ProjectPaths) -> None:
    """`image = NAME:TAG`: user, entrypoint, env, and VOLUMEs as anonymous volumes."""
    (context / "Containerfile").write_text(
        "FROM scratch\nCOPY rootfs/ /\nUSER nobody\nVOLUME /data\n"
        'ENTRYPOINT ["sh", "-c"]\nCMD ["id -u; grep -c /data /proc/mounts"]\n')
    ok("build", "-t", "localhost:5000/tool:1", str(context))
    assert ok("run", "--rm", "localhost:5000/tool:1") == "65534\n1\n"
    assert ok("run", "--rm", "localhost:5000/tool:1", "echo $0", "x") == "x\n"
    assert not list((project.volumes).glob("*/_data"))  # --rm took the anonymous volume


def test_diff_and_commit_round_trip(context: Path) -> None:
    """Acceptance 3: `diff` lists A/C/D of the writable layer; the committed image has the
    container's changes."""
    (context / "Containerfile").write_text(APP)
    (context / "app.txt").write_text("version 1\n")
    ok("build", "-t", "app:1", str(context))
    ok("run", "--name", "c1", "app:1", "sh", "-c",
       "echo new > /new; echo more >> /app/app.txt; rm /bin/vi; rm -r /data")
    diff = ok("diff", "c1").splitlines()
    for line in ("A /new", "C /app", "C /app/app.txt", "C /bin", "D /bin/vi", "D /data"):
        assert line in diff
    assert not any(line.startswith(("A /etc", "C /etc")) for line in diff)
    ok("commit", "c1", "app:committed")
    ok("rm", "c1")
    script = "cat /new /app/app.txt; ls /bin/vi /data 2>&1 | wc -l; echo $GREETING"
    assert ok("run", "--rm", "app:committed", "sh", "-c", script) == \
        "new\nversion 1\nmore\n2\nhello\n"
    history = ok("history", "app:committed")
    assert "supervise commit c1" in history


def test_tag_rmi_in_use_and_prune(context: Path) -> None:
    (context / "Containerfile").write_text("FROM scratch\nCOPY rootfs/ /\nCMD [\"true\"]\n")
    image_id = ok("build", "-t", "app:1", str(context)).splitlines()[-1]
    ok("tag", "app:1", "localhost:5000/app:1")
    listed = [line.split()[:3] for line in ok("images").splitlines()[1:]]
    assert listed == [["app", "1", image_id[:12]], ["localhost:5000/app", "1", image_id[:12]]]
    ok("run", "--name", "user", "app:1")
    r = sv("rmi", "app:1")  # one of two tags: only untagged, allowed
    assert r.returncode == 0 and "Untagged: app:1" in r.stdout
    r = sv("rmi", "localhost:5000/app:1")
    assert r.returncode == 1
    assert "image is in use by container" in r.stderr and "/user" in r.stderr
    ok("rm", "user")
    assert f"Deleted: sha256:{image_id}" in ok("rmi", "localhost:5000/app:1")
    assert ok("images", "-q") == ""
    ok("image", "prune")
    store = Store.default()
    assert list(store.blobs.iterdir()) == [] and list(store.layers_dir.iterdir()) == []
