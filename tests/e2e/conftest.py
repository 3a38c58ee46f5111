"""The e2e tests run real stacks as root: the privileged tests' leak guard and stack
fixture, the same ones."""

from __future__ import annotations

from tests.privileged.conftest import leak_guard, stack

__all__ = ["leak_guard", "stack"]
