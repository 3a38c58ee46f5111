"""Fixtures every layer shares: a private state/run dir per test, a busybox rootfs."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.paths import ProjectPaths
from tests.leakguard import OURS, sweep_ours
from tests.rootfs import build_busybox_rootfs


@pytest.fixture(scope="session", autouse=True)
def _leak_scope(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    OURS.add(str(tmp_path_factory.getbasetemp()))
    yield
    if os.geteuid() == 0:
        for line in sweep_ours():  # a failed test's leak is already reported by the guard
            print(f"swept: {line}")


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("busybox") / "rootfs"
    build_busybox_rootfs(root)
    return root


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProjectPaths]:
    """A project of its own, with state and runtime dirs under the test's tmp_path."""
    monkeypatch.setenv("SUPERVISE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SUPERVISE_RUN_DIR", str(tmp_path / "run"))
    name = f"t{uuid.uuid4().hex[:8]}"
    OURS.add(name)
    monkeypatch.setenv("SUPERVISE_PROJECT", name)
    yield ProjectPaths.for_project(name, os.environ)
