from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from supervisor.paths import ProjectPaths
from tests.leakguard import Snapshot
from tests.privileged.supervised import Supervised


def require_root() -> None:
    """Privileged tests run for real; in CI a test that would skip fails instead."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("privileged test needs root, and CI must not skip it")
        pytest.skip("needs root")


@pytest.fixture(autouse=True)
def leak_guard() -> Iterator[None]:
    require_root()
    before = Snapshot.take()
    yield
    deadline = time.monotonic() + 3  # cgroup rmdir and reaping may trail by milliseconds
    while True:
        leaks = Snapshot.take().leaks_since(before)
        if not leaks or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaks, "the test leaked: " + "; ".join(leaks)


@pytest.fixture
def stack(project: ProjectPaths) -> Iterator[list[Supervised]]:
    """A list to append Supervised stacks to; every one is brought down at the end."""
    made: list[Supervised] = []
    yield made
    for s in made:
        s.down("-v")
