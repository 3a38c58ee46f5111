"""Dependency graphs of names: cycles and start levels.

A leaf (L0) on purpose: ``config`` refuses a cyclic stack while loading it, and ``plan`` (L1,
which reads Containers) orders the start; both need the same graph code, and ``config`` may not
import upward.  A graph here is ``name -> the names it depends on``, in the order the user wrote
them, so that a reported cycle reads the way the file does.  Edges to names that are not keys
of the graph are ignored: the caller decides whether such a name is an error (the stack file)
or an already-satisfied dependency (starting a subset of a running stack).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Graph = Mapping[str, Iterable[str]]


def find_cycle(deps: Graph) -> list[str] | None:
    """The first cycle met, walking the names in order: ``["web", "db", "web"]``; else None.

    Iterative, so that a long chain of containers cannot hit Python's recursion limit.
    """
    edges = {name: [d for d in targets if d in deps] for name, targets in deps.items()}
    done: set[str] = set()
    for root in edges:
        if root in done:
            continue
        path: list[str] = [root]
        on_path = {root}
        todo = [iter(edges[root])]
        while todo:
            step = next(todo[-1], None)
            if step is None:
                todo.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif step in on_path:
                return [*path[path.index(step) :], step]
            elif step not in done:
                path.append(step)
                on_path.add(step)
                todo.append(iter(edges[step]))
    return None


def levels(deps: Graph) -> list[list[str]]:
    """Names in levels: each level's names depend only on names of earlier levels, so a level
    may start all at once when the ones before it are ready.  Sorted inside a level, so the
    order is the same on every run.  ValueError on a cycle."""
    edges = {name: {d for d in targets if d in deps} for name, targets in deps.items()}
    placed: set[str] = set()
    out: list[list[str]] = []
    while len(placed) < len(edges):
        level = sorted(n for n, ds in edges.items() if n not in placed and ds <= placed)
        if not level:
            cycle = find_cycle({n: deps[n] for n in edges if n not in placed})
            raise ValueError("dependency cycle: " + " -> ".join(cycle or []))
        out.append(level)
        placed.update(level)
    return out


def reverse(deps: Graph) -> dict[str, list[str]]:
    """``name -> the names that depend on it`` (its dependants), keys in the graph's order."""
    out: dict[str, list[str]] = {name: [] for name in deps}
    for name, targets in deps.items():
        for target in targets:
            if target in out and name not in out[target]:
                out[target].append(name)
    return out
