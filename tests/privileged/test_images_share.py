"""Images leaving and entering the store for real: save/load with skopeo and umoci on the other
side; push/pull against Debian's docker-registry on loopback.  Each test names the acceptance
point of issue 8 it shows."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.images.store import Store
from supervisor.paths import ProjectPaths
from tests.privileged.supervised import Supervised, make_stack
from tests.privileged.test_images import APP, context, ok, sv
from tests.unit.test_images_registry import LocalRegistry

__all__ = ["context"]  # the fixture, shared with test_images


def tool(*argv: str, cwd: Path | None = None) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd)
    assert r.returncode == 0, f"{' '.join(argv)}: {r.stdout}{r.stderr}"
    return r.stdout


def blob_names(store: Store) -> set[str]:
    return {p.name for p in store.blobs.iterdir()}


def test_save_load_and_skopeo(context: Path, tmp_path: Path, busybox_rootfs: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Acceptance 4: save then load into an empty store keeps every digest; skopeo reads the
    saved archive in both formats; archives skopeo made from an umoci layout load and run."""
    (context / "Containerfile").write_text(APP)
    (context / "app.txt").write_text("version 1\n")
    ok("build", "-t", "app:1", str(context))
    image = Store.default().resolve("app:1")
    wanted = {d.removeprefix("sha256:") for d in
              [image.manifest_digest, image.id, *(d.digest for d in image.manifest.layers)]}
    saved = tmp_path / "app.tar"
    ok("save", "-o", str(saved), "app:1")

    seen = json.loads(tool("skopeo", "inspect", f"oci-archive:{saved}"))
    assert seen["Digest"] == image.manifest_digest
    assert seen["Layers"] == [d.digest for d in image.manifest.layers]
    raw = json.loads(tool("skopeo", "inspect", "--raw", f"docker-archive:{saved}"))
    assert raw["config"]["digest"] == image.id
    # skopeo presents a docker archive's layers uncompressed, so by their DiffIDs
    assert [d["digest"] for d in raw["layers"]] == image.diff_ids

    monkeypatch.setenv("SUPERVISE_IMAGE_DIR", str(tmp_path / "empty"))
    assert ok("load", "-i", str(saved)) == "Loaded image: app:1\n"
    assert blob_names(Store.default()) == wanted
    assert Store.default().resolve("app:1").manifest_digest == image.manifest_digest
    assert ok("run", "--rm", "app:1") == "hello\nversion 1\nbuilt\n"

    # Made by other tools: umoci packs the busybox tree, skopeo writes both archive kinds.
    layout = tmp_path / "umoci"
    tool("umoci", "init", "--layout", str(layout))
    tool("umoci", "new", "--image", f"{layout}:base")
    bundle = tmp_path / "bundle"
    tool("umoci", "unpack", "--image", f"{layout}:base", str(bundle))
    shutil.copytree(busybox_rootfs, bundle / "rootfs", symlinks=True, dirs_exist_ok=True)
    tool("umoci", "repack", "--image", f"{layout}:base", str(bundle))
    tool("umoci", "config", "--image", f"{layout}:base", "--config.cmd", "sh",
         "--config.cmd", "-c", "--config.cmd", "echo from umoci")
    tool("skopeo", "copy", "-q", f"oci:{layout}:base", f"oci-archive:{tmp_path}/o.tar:umoci:oci")
    tool("skopeo", "copy", "-q", f"oci:{layout}:base",
         f"docker-archive:{tmp_path}/d.tar:umoci:docker")
    assert ok("load", "-i", str(tmp_path / "o.tar")) == "Loaded image: umoci:oci\n"
    assert ok("load", "-i", str(tmp_path / "d.tar")) == "Loaded image: umoci:docker\n"
    assert ok("run", "--rm", "umoci:oci") == "from umoci\n"
    assert ok("run", "--rm", "umoci:docker", "ls", "/bin/vi") == "/bin/vi\n"
    # Same config either way; the docker archive's layer is the uncompressed tar.
    store = Store.default()
    assert store.resolve("umoci:oci").id == store.resolve("umoci:docker").id
    assert sv("load", "-i", str(tmp_path / "missing.tar")).stderr == \
        f"supervise load: {tmp_path}/missing.tar: No such file or directory\n"


# -- push and pull ---------------------------------------------------------------------------

@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRegistry]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    reg = LocalRegistry(tmp_path / "registry", auth="htpasswd")
    yield reg
    reg.stop()


def test_push_pull_through_a_registry(context: Path, tmp_path: Path, registry: LocalRegistry,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Acceptance 5: push, empty the store, pull, run: same digests; a second image on the
    same base uploads only its new layers (the registry's access log shows which)."""
    r = registry.address
    (context / "Containerfile").write_text("FROM scratch\nCOPY rootfs/ /\nENV GREETING=hello\n")
    ok("build", "-t", f"{r}/base:1", str(context))
    (context / "Containerfile").write_text(APP.replace("FROM scratch\nCOPY rootfs/ /\n",
                                                       f"FROM {r}/base:1\n"))
    (context / "app.txt").write_text("version 1\n")
    ok("build", "-t", f"{r}/app:1", str(context))
    store = Store.default()
    base, app = store.resolve(f"{r}/base:1"), store.resolve(f"{r}/app:1")
    base_blobs = {base.id, *(d.digest for d in base.manifest.layers)}
    app_new = {app.id, *(d.digest for d in app.manifest.layers)} - base_blobs
    assert len(app.manifest.layers) == 3 and len(app_new) == 3  # two layers and the config

    refused = sv("push", f"{r}/base:1")
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == \
        f"{r}: authentication required (log in with `supervise login {r}`)"
    login = subprocess.run([sys.executable, "-m", "supervisor", "login", "-u", "alice",
                            "--password-stdin", r], input="s3cret\n", capture_output=True,
                           text=True, timeout=30)
    assert login.returncode == 0, login.stderr
    auth = tmp_path / "config/supervise/auth.json"
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert list(json.loads(auth.read_text())["auths"]) == [r]

    mark = registry.mark()
    pushed = sv("push", f"{r}/base:1")
    assert pushed.stdout == f"1: digest: {base.manifest_digest} size: " \
        f"{store.blob_path(base.manifest_digest).stat().st_size}\n"
    assert registry.uploaded_since(mark) == base_blobs
    mark = registry.mark()
    pushed = sv("push", f"{r}/app:1")
    assert pushed.returncode == 0, pushed.stderr
    assert registry.uploaded_since(mark) == app_new  # the base's layer: mounted, not sent
    assert f"{base.manifest.layers[0].digest[7:19]}: Mounted from base" in pushed.stderr
    mark = registry.mark()
    again = sv("push", f"{r}/app:1", f"{r}/app:again")  # a new tag, nothing to send
    assert again.returncode == 0 and again.stderr.count("Layer already exists") == 4
    assert registry.uploaded_since(mark) == set()

    monkeypatch.setenv("SUPERVISE_IMAGE_DIR", str(tmp_path / "empty"))
    pulled = sv("pull", f"{r}/app:1")
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout == f"{r}/app:1\n"
    assert pulled.stderr.count("Pull complete") == 4  # three layers and the config
    image = Store.default().resolve(f"{r}/app:1")
    assert (image.manifest_digest, image.id, image.manifest.layers) == \
        (app.manifest_digest, app.id, app.manifest.layers)
    assert ok("run", "--rm", f"{r}/app:1") == "hello\nversion 1\nbuilt\n"
    missing = sv("pull", f"{r}/app:2")
    assert (missing.returncode, missing.stderr.splitlines()[-1]) == \
        (1, f"{r}/app:2: manifest unknown")


# -- the stack file's `build` ----------------------------------------------------------------


def test_stack_builds_before_up(stack: list[Supervised], project: ProjectPaths,
                                tmp_path: Path, context: Path, busybox_rootfs: Path) -> None:
    """`build = "DIR"`: built before up, tagged `<project>_<name>`; the container runs it."""
    (context / "Containerfile").write_text(
        'FROM scratch\nCOPY rootfs/ /\nCOPY app.txt /\nCMD ["sleep", "1000"]\n')
    (context / "app.txt").write_text("v1\n")
    s = make_stack(stack, project, tmp_path, '[containers.web]\nbuild = "ctx"\n',
                   busybox_rootfs)
    r = s.up()
    assert r.returncode == 0, r.stderr
    assert f"Building web ({project.project}_web)" in r.stdout and "STEP 4/4" in r.stdout
    assert s.ok("exec", "web", "cat", "/app.txt") == "v1\n"
    image = Store.default().resolve(f"{project.project}_web")
    assert json.loads((project.container("web") / "image.json").read_text())["id"] == image.id
