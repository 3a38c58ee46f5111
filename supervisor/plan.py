"""What to start, in which order, and what an edited stack changes: pure functions of Containers.

The graph itself (cycles, levels) is ``supervisor.graph``, a leaf that ``config`` also uses to
refuse a cyclic stack; what counts as an edge is ``Container.dependencies``.  Here are the
orders the stack follows and the hash that tells ``up`` which containers to recreate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec

from supervisor import graph
from supervisor.config import Container

__all__ = ["changed", "config_hash", "dependencies", "find_cycle", "start_order", "stop_order"]

find_cycle = graph.find_cycle


def dependencies(containers: Mapping[str, Container]) -> dict[str, dict[str, str]]:
    """``name -> {dependency: condition}``: ``depends_on`` with its conditions, ``volumes_from``
    as ``service_started``."""
    return {name: dict(c.dependencies()) for name, c in containers.items()}


def start_order(containers: Mapping[str, Container]) -> list[list[str]]:
    """Levels to start: a level's containers may start together once the levels before it have
    met their conditions.  A dependency on a container not in ``containers`` is taken as met:
    the caller is starting a subset (``up`` recreating what changed) whose dependencies are
    already running.  ValueError on a cycle (a loaded Stack has none)."""
    return graph.levels(dependencies(containers))


def stop_order(containers: Mapping[str, Container]) -> list[list[str]]:
    """Levels to stop: a container stops once everything that depends on it has stopped.

    Computed on the reversed graph rather than as ``start_order`` reversed, so that a container
    nothing depends on stops in the first level however deep it started (Compose's
    ``InReverseDependencyOrder``)."""
    return graph.levels(graph.reverse(dependencies(containers)))


def _essential(value: Any) -> Any:
    """A Struct as plain data without the fields left at their default.

    So that a supervise release adding a key (with a default) does not change every hash and
    recreate every container on the next ``up``, as Compose's ``omitempty`` fields do not."""
    if isinstance(value, msgspec.Struct):
        out = {}
        for f in msgspec.structs.fields(value):
            item = getattr(value, f.name)
            if f.default is not msgspec.NODEFAULT and item == f.default:
                continue
            if f.default_factory is not msgspec.NODEFAULT and item == f.default_factory():
                continue
            out[f.name] = _essential(item)
        return out
    if isinstance(value, list):
        return [_essential(v) for v in value]
    if isinstance(value, dict):
        return {k: _essential(v) for k, v in value.items()}
    return value


def config_hash(c: Container) -> str:
    """sha256 of the container's configuration, for its record and labels.

    ``depends_on`` is left out, as Compose's ``ServiceHash`` leaves it out: it orders the start
    but changes nothing inside the container, so editing it recreates nothing.  Keys are
    sorted and defaults left out, so the hash depends on the configuration, not on how the
    Struct is laid out in this release."""
    data = _essential(c)
    data.pop("depends_on", None)
    return hashlib.sha256(msgspec.json.encode(data, order="sorted")).hexdigest()


def changed(old: Container, new: Container, *, old_image: str | None = None,
            new_image: str | None = None) -> bool:
    """Whether ``up`` must recreate a container whose configuration went from old to new.

    ``old_image`` is the ID of the image the container was made from (its ``image.json``),
    ``new_image`` the ID its ``image`` names now: a tag moved by a build, a pull, or pointed
    back at an older image (a rollback) recreates the container, as Compose's does."""
    if config_hash(old) != config_hash(new):
        return True
    return old_image is not None and new_image is not None and old_image != new_image
