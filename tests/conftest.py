"""Fixtures every layer shares: a private state/run dir per test, a busybox rootfs."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.paths import ProjectPaths

BUSYBOX = shutil.which("busybox") or "/usr/bin/busybox"


def _build_busybox_rootfs(root: Path) -> None:
    """busybox-static plus applet symlinks, merged-/usr style (kernel-recipes §1)."""
    for d in ("bin", "usr", "etc", "tmp", "root", "proc", "dev", "sys", "var/log"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", root / "bin" / applet)
    for name in ("sbin", "lib", "lib64"):
        os.symlink(f"usr/{name}" if name != "sbin" else "bin", root / name)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                     "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    os.chmod(root / "tmp", 0o1777)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("busybox") / "rootfs"
    _build_busybox_rootfs(root)
    return root


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProjectPaths]:
    """A project of its own, with state and runtime dirs under the test's tmp_path."""
    monkeypatch.setenv("SUPERVISE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SUPERVISE_RUN_DIR", str(tmp_path / "run"))
    name = f"t{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SUPERVISE_PROJECT", name)
    yield ProjectPaths.for_project(name, os.environ)
