"""design.md's layering: imports only point down, and a few rules of who may import what.

Every module must be placed in LAYERS; a new module fails this test until it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LAYERS: dict[str, int] = {
    # L0 leaves
    "supervisor": 0, "supervisor.errors": 0, "supervisor.config": 0,
    "supervisor.config_keys": 0, "supervisor.units": 0, "supervisor.interpolate": 0,
    "supervisor.toml_writer": 0, "supervisor.protocol": 0, "supervisor.paths": 0,
    "supervisor.capabilities": 0, "supervisor.config_lifecycle": 0, "supervisor.graph": 0,
    "supervisor.config_net": 0,
    "logging_bus": 0, "logging_bus.errors": 0, "logging_bus.record": 0,
    "logging_bus.specs": 0, "supervisor.config_logs": 0,
    # L1 pure
    "supervisor.restart": 1, "supervisor.health": 1, "supervisor.plan": 1,
    "supervisor.ipam": 1, "supervisor.dnswire": 1,
    "logging_bus.framing": 1, "logging_bus.filters": 1,
    # L2 kernel (sync, no trio)
    "supervisor.linux": 2, "supervisor.linux.init": 2, "supervisor.linux.namespaces": 2,
    "supervisor.linux.cgroups": 2, "supervisor.linux.netlink": 2, "supervisor.linux.nft": 2,
    "logging_bus.segment": 2,
    # L3 engines
    "supervisor.runtime": 3, "supervisor.container": 3, "supervisor.volumes": 3,
    "supervisor.rootfs": 3, "supervisor.httpserver": 3, "supervisor.events": 3,
    "supervisor.fdio": 3, "supervisor.network": 3, "supervisor.ports": 3,
    "supervisor.images": 3, "supervisor.images.reference": 0, "supervisor.images.oci": 0,
    "supervisor.images.containerfile": 1, "supervisor.images.layers": 3,
    "supervisor.images.store": 3, "supervisor.images.use": 3, "supervisor.images.archive": 3,
    "supervisor.images.registry": 3, "supervisor.images.auth": 3,
    "supervisor.images.transfer": 3, "supervisor.images.build": 4,
    "supervisor.images.commit": 4, "supervisor.images.context": 3,
    "logging_bus.store": 3, "logging_bus.reader": 3, "logging_bus.follow": 3,
    "logging_bus.query": 3,
    "logging_bus.sources": 3, "logging_bus.forward": 3, "logging_bus.sinks": 3,
    "logging_bus.sinks.console": 3, "logging_bus.sinks.jsonfile": 3,
    "logging_bus.sinks.syslog": 3, "logging_bus.sinks.http": 3, "logging_bus.sinks.loki": 3,
    "logging_bus.sinks.elasticsearch": 3,
    # L4 orchestrate
    "supervisor.foreground": 4, "supervisor.service": 4, "supervisor.stack": 4,
    "supervisor.api": 4, "supervisor.api_views": 4, "supervisor.daemon": 4, "supervisor.printer": 4,
    # L5 entry
    "supervisor.cli": 5, "supervisor.__main__": 5, "supervisor.client": 5,
    "supervisor.cli_api": 5, "supervisor.cli_common": 5, "supervisor.cli_logs": 5,
    "supervisor.lightclient": 5, "supervisor.cli_images": 5, "supervisor.cli_registry": 5,
    "supervisor.tui": 5, "supervisor.tui.fmt": 5, "supervisor.tui.model": 5,
    "supervisor.tui.commands": 5, "supervisor.tui.feed": 5, "supervisor.tui.runner": 5,
    "supervisor.tui.view": 5, "supervisor.tui.app": 5, "supervisor.tui.plain": 5,
    "supervisor.tui.keys": 5,
}
THIRD_PARTY_HOME = {"pyroute2": {"supervisor.linux.netlink"},
                    "prompt_toolkit": {"supervisor.tui"},
                    "httpx": {"supervisor.client", "logging_bus.sinks.http",
                              "supervisor.images.registry"},
                    "h11": {"supervisor.httpserver"}}
# The client runs in the CLI and in the TUI's asyncio process: only wire shapes and errors.
CLIENT_MAY_IMPORT = {"supervisor.protocol", "supervisor.errors", "logging_bus.record",
                     "supervisor.lightclient"}  # its stdlib HTTP helpers, one copy


def modules() -> dict[str, Path]:
    out = {}
    for package in ("supervisor", "logging_bus"):
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def owner(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def test_every_module_has_a_layer() -> None:
    missing = sorted(set(modules()) - set(LAYERS))
    assert not missing, f"place these in LAYERS (design.md): {missing}"


def test_imports_only_point_down() -> None:
    known = modules()
    upward = []
    for name, path in known.items():
        for imported in imports(path):
            target = owner(imported, known)
            if target is None or target == name or name.startswith(target + "."):
                continue
            if LAYERS.get(target, 0) > LAYERS.get(name, 0):
                upward.append(f"{name} (L{LAYERS[name]}) imports {target} (L{LAYERS[target]})")
    assert not upward, upward


def test_rules_of_who_imports_what() -> None:
    broken = []
    for name, path in modules().items():
        found = imports(path)
        roots = {i.split(".")[0] for i in found}
        if name.startswith("logging_bus") and "supervisor" in roots:
            broken.append(f"{name} imports supervisor")
        if name.startswith("supervisor.linux") and "trio" in roots:
            broken.append(f"{name} imports trio")
        if name == "supervisor.client":
            ours = {owner(i, modules()) for i in found if i.split(".")[0] in
                    ("supervisor", "logging_bus")}
            broken += [f"{name} imports {o}" for o in sorted(ours - CLIENT_MAY_IMPORT, key=str)]
            if "trio" in roots:
                broken.append(f"{name} imports trio (the TUI runs on asyncio)")
        for lib, homes in THIRD_PARTY_HOME.items():
            if lib in roots and not any(name == h or name.startswith(h + ".") for h in homes):
                broken.append(f"{name} imports {lib} (its home is {sorted(homes)})")
    assert not broken, broken


def test_init_helper_is_standalone() -> None:
    """The fork server runs as `python -I -S init.py`: standard library only."""
    path = ROOT / "supervisor/linux/init.py"
    roots = {i.split(".")[0] for i in imports(path)}
    assert not roots & {"supervisor", "logging_bus", "trio", "msgspec", "pyroute2"}
