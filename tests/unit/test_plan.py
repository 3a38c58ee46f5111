"""Start and stop order, cycles, and what `up` recreates."""

from __future__ import annotations

import msgspec
import pytest

from supervisor import graph
from supervisor.config import (
    Container,
    DependsOn,
    Healthcheck,
    RestartPolicy,
    VolumesFrom,
)
from supervisor.plan import (
    changed,
    config_hash,
    dependencies,
    find_cycle,
    start_order,
    stop_order,
)


def stack(spec: dict[str, str]) -> dict[str, Container]:
    """``{"web": "db cache:healthy data@"}``: web depends on db, on cache (service_healthy) and
    takes volumes from data."""
    conditions = {"": "service_started", "healthy": "service_healthy",
                  "done": "service_completed_successfully"}  # fmt: skip
    out = {}
    for name, deps in spec.items():
        depends_on, volumes_from = {}, []
        for word in deps.split():
            if word.endswith("@"):
                volumes_from.append(VolumesFrom(container=word[:-1]))
            else:
                dep, _, cond = word.partition(":")
                depends_on[dep] = DependsOn(condition=conditions[cond])  # type: ignore[arg-type]
        out[name] = Container(name=name, image="alpine", depends_on=depends_on,
                              volumes_from=volumes_from)  # fmt: skip
    return out


def test_dependencies() -> None:
    containers = stack({"web": "db:healthy cache data@ db@", "db": "", "cache": "", "data": ""})
    assert dependencies(containers) == {
        "web": {"db": "service_healthy", "cache": "service_started", "data": "service_started"},
        "db": {}, "cache": {}, "data": {},
    }  # fmt: skip


# -- cycles ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("deps", "cycle"), [
    ({"a": [], "b": ["a"]}, None),
    ({"a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
    ({"web": ["db"], "db": ["web"]}, ["web", "db", "web"]),  # in the order written, not sorted
    ({"a": ["b"], "b": ["c"], "c": ["a"]}, ["a", "b", "c", "a"]),
    ({"x": ["a"], "a": ["b"], "b": ["a"]}, ["a", "b", "a"]),  # the cycle, not the way in
    ({"a": ["a"]}, ["a", "a"]),
    ({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}, None),  # a diamond is no cycle
    ({"a": ["missing"]}, None),  # names outside the graph are the caller's business
    ({"a": ["b"], "b": [], "c": ["d"], "d": ["e"], "e": ["c"]}, ["c", "d", "e", "c"]),
])  # fmt: skip
def test_find_cycle(deps: dict[str, list[str]], cycle: list[str] | None) -> None:
    assert find_cycle(deps) == cycle


def test_find_cycle_on_a_long_chain() -> None:
    chain = {f"c{i}": [f"c{i + 1}"] for i in range(5000)} | {"c5000": []}
    assert find_cycle(chain) is None  # no recursion limit
    chain["c5000"] = ["c0"]
    cycle = find_cycle(chain)
    assert cycle is not None and len(cycle) == 5002 and cycle[0] == cycle[-1] == "c0"


def test_find_cycle_through_volumes_from_and_depends_on() -> None:
    containers = stack({"web": "db", "db": "cache@", "cache": "web:done"})
    assert find_cycle(dependencies(containers)) == ["web", "db", "cache", "web"]


# -- orders ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "start", "stop"), [
    ({"b": "", "a": "", "c": ""}, [["a", "b", "c"]], [["a", "b", "c"]]),
    ({"web": "db", "db": ""}, [["db"], ["web"]], [["web"], ["db"]]),
    ({"web": "api", "api": "db cache", "db": "", "cache": ""},
     [["cache", "db"], ["api"], ["web"]], [["web"], ["api"], ["cache", "db"]]),
    # a diamond: d first, then b and c together, then a
    ({"a": "b c", "b": "d", "c": "d", "d": ""},
     [["d"], ["b", "c"], ["a"]], [["a"], ["b", "c"], ["d"]]),
    # a container nothing depends on stops in the first level, however deep it started
    ({"web": "api", "api": "db", "db": "", "worker": "db"},
     [["db"], ["api", "worker"], ["web"]], [["web", "worker"], ["api"], ["db"]]),
    ({"app": "data@", "data": ""}, [["data"], ["app"]], [["app"], ["data"]]),
    ({"lone": "", "web": "db:healthy", "db": ""}, [["db", "lone"], ["web"]],
     [["lone", "web"], ["db"]]),
])  # fmt: skip
def test_start_and_stop_order(spec: dict[str, str], start: list[list[str]],
                              stop: list[list[str]]) -> None:  # fmt: skip
    containers = stack(spec)
    assert start_order(containers) == start
    assert stop_order(containers) == stop


def test_start_order_of_a_subset_takes_outside_dependencies_as_met() -> None:
    containers = stack({"web": "db api", "api": "db", "db": ""})
    del containers["db"]  # `up` recreates web and api only; db keeps running
    assert start_order(containers) == [["api"], ["web"]]
    assert stop_order(containers) == [["web"], ["api"]]


def test_orders_refuse_a_cycle() -> None:
    containers = stack({"web": "db", "db": "web", "other": ""})
    with pytest.raises(ValueError, match=r"^dependency cycle: web -> db -> web$"):
        start_order(containers)
    with pytest.raises(ValueError, match=r"^dependency cycle: "):
        stop_order(containers)


def test_graph_reverse() -> None:
    assert graph.reverse({"a": ["b", "c"], "b": ["c"], "c": [], "d": ["zz"]}) == {
        "a": [], "b": ["a"], "c": ["a", "b"], "d": []}


# -- what `up` recreates --------------------------------------------------------------------

BASE = Container(name="web", image="alpine", command=["httpd", "-f"])


def test_config_hash_is_pinned() -> None:
    """Records keep this hash: a change in how it is computed recreates every container of
    every stack on the next `up`.  Change the pinned value only on purpose.  It is the sha256
    of `{"image":"alpine","name":"web"}`: sorted keys, defaults left out."""
    assert config_hash(Container(name="web", image="alpine")) == (
        "b8f4ed6dbc5eea9eef9dd7a3cb9419bd490cfdd90e00f2c990984903bc100a7c")


@pytest.mark.parametrize(("edit", "recreate"), [
    ({}, False),
    ({"image": "alpine:3.19"}, True),
    ({"command": ["httpd", "-f", "-v"]}, True),
    ({"environment": {"A": "1"}}, True),
    ({"restart": RestartPolicy(name="always")}, True),
    ({"healthcheck": Healthcheck(test=["CMD", "true"])}, True),
    ({"volumes_from": [VolumesFrom(container="db")]}, True),
    # depends_on orders the start and changes nothing inside the container (as Compose)
    ({"depends_on": {"db": DependsOn(condition="service_healthy")}}, False),
    # writing a default explicitly is the same configuration
    ({"restart": RestartPolicy(name="no"), "stop_grace_period": 10.0, "environment": {}}, False),
])  # fmt: skip
def test_changed(edit: dict[str, object], recreate: bool) -> None:
    new = msgspec.structs.replace(BASE, **edit)
    assert changed(BASE, new) is recreate
    assert (config_hash(BASE) != config_hash(new)) is recreate


def test_config_hash_shape() -> None:
    digest = config_hash(BASE)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert config_hash(msgspec.json.decode(msgspec.json.encode(BASE), type=Container)) == digest
