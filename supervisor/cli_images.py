"""The image verbs of the command line: build, images, tag, rmi, history, diff, commit,
save, load (push, pull, login, logout: cli_registry).

They work on the image store directly, in this process (no supervisor needed), as `run`
does in the foreground.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from supervisor.errors import SupervisorError


def _store() -> Any:
    from supervisor.images.store import Store

    return Store.default()


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}GB"


def _ago(created: str | None) -> str:
    if not created:
        return "N/A"
    try:
        then = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return created
    seconds = max(0.0, time.time() - then)
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "Less than a minute ago" if seconds >= 1 else "Less than a second ago"


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def cmd_build(args: argparse.Namespace) -> int:
    import trio

    from supervisor.images.build import Builder
    from supervisor.images.reference import parse

    tags = [parse(t, where="supervise build: -t") for t in args.tag or []]
    build_args = {}
    for item in args.build_arg or []:
        key, sep, value = item.partition("=")
        build_args[key] = value if sep else os.environ.get(key, "")
    builder = Builder(_store(), Path(args.context), file=Path(args.file) if args.file else None,
                      build_args=build_args, no_cache=args.no_cache,
                      network=args.network != "none")
    trio.run(builder.build, tags)
    return 0


def build_stack_images(stack: Any) -> None:
    """`up`: builds the images of the containers with `build = "DIR"`, tagged with their
    `image` (a step whose inputs did not change comes from the cache)."""
    import trio

    from supervisor.images.build import Builder
    from supervisor.images.reference import parse

    for name, c in stack.containers.items():
        if c.build is None:
            continue
        print(f"Building {name} ({c.image})", flush=True)
        builder = Builder(_store(), Path(c.build), network=stack.stack.network.outbound)
        trio.run(builder.build, [parse(c.image, where=f"{name}: image")])


def cmd_images(args: argparse.Namespace) -> int:
    from supervisor.images.reference import parse

    rows = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]]
    for image in sorted(_store().images(), key=lambda i: i.config.created or "", reverse=True):
        for name in image.names:
            ref = parse(name)
            if args.quiet:
                print(image.short_id)
                continue
            rows.append([ref.familiar_repository, ref.tag or "<none>", image.short_id,
                         _ago(image.config.created), _size(image.size)])
    if not args.quiet:
        _table(rows)
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    from supervisor.images.reference import parse

    store = _store()
    image = store.resolve(args.source)
    store.tag(parse(args.target, where="supervise tag"), store.manifest_descriptor(image))
    return 0


def _container_images() -> list[tuple[str, Any]]:
    """("project/container", ImageUse) of every container record made from an image, in
    every project."""
    from supervisor.images.use import load
    from supervisor.paths import state_root

    out = []
    for record in sorted(state_root().glob("*/containers/*/record.json")):
        use = load(record.parent)
        if use is not None:
            out.append((f"{record.parent.parent.parent.name}/{record.parent.name}", use))
    return out


def images_in_use() -> dict[str, list[str]]:
    """image ID -> "project/container" of the containers made from it."""
    out: dict[str, list[str]] = {}
    for who, use in _container_images():
        out.setdefault(use.id, []).append(who)
    return out


def cmd_image(args: argparse.Namespace) -> int:
    """`image prune`: the build cache, untagged images and layers no container uses."""
    used = [use for _, use in _container_images()]
    blobs, unpacked = _store().prune({u.manifest for u in used},
                                     {d for u in used for d in u.lower})
    print(f"Deleted {blobs} blobs and {unpacked} unpacked layers")
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    from supervisor.images.reference import parse

    store = _store()
    in_use = images_in_use()
    failed = 0
    for name in args.names:
        try:
            image = store.resolve(name)
            users = in_use.get(image.id, [])
            names = sorted(n for n, d in store.tags().items() if d == image.manifest_digest)
            ref = parse(name) if not name.startswith("sha256:") else None
            named_by_tag = ref is not None and str(ref) in names
            # Removing one of several tags only untags; the image itself needs no user.
            if users and not args.force and not (named_by_tag and len(names) > 1):
                raise SupervisorError(f"{name}: image is in use by container "
                                      f"{users[0]}" + (f" and {len(users) - 1} more"
                                                       if len(users) > 1 else ""))
            targets = [parse(str(ref))] if named_by_tag and ref else [parse(n) for n in names]
            for t in targets:
                store.untag(t)
                print(f"Untagged: {t.familiar()}")
            if not named_by_tag or len(names) == 1:
                print(f"Deleted: {image.id}")
        except SupervisorError as e:
            print(str(e), file=sys.stderr)
            failed = 1
    return failed


def cmd_history(args: argparse.Namespace) -> int:
    store = _store()
    image = store.resolve(args.image)
    layers = list(image.manifest.layers)
    rows = [["CREATED", "CREATED BY", "SIZE", "COMMENT"]]
    entries = []
    for h in image.config.history:
        size = "0B"
        if not h.empty_layer and layers:
            size = _size(layers.pop(0).size)
        by = (h.created_by or "").replace("\n", " ")
        if not args.no_trunc and len(by) > 45:
            by = by[:44] + "…"
        entries.append([_ago(h.created), by, size, h.comment or ""])
    _table(rows + entries[::-1])
    return 0


def _container_paths(args: argparse.Namespace) -> Any:
    from supervisor.cli import _run_project

    return _run_project(args)


def cmd_diff(args: argparse.Namespace) -> int:
    from supervisor.images.commit import changes

    for kind, path in sorted(changes(_container_paths(args), args.name),
                             key=lambda c: c[1]):
        print(f"{kind} {path}")
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    from supervisor.images.commit import commit
    from supervisor.images.reference import parse

    ref = parse(args.target, where="supervise commit") if args.target else None
    image = commit(_store(), _container_paths(args), args.name, ref, author=args.author,
                   message=args.message)
    print(image.id)
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    from supervisor.errors import UsageError
    from supervisor.images import archive
    from supervisor.images.reference import try_parse

    formats = archive.parse_format(args.format)
    store = _store()
    items = []
    for name in args.images:
        image = store.resolve(name)
        ref = try_parse(name)  # named by a tag: saved with it; by ID: without, as Docker's
        items.append((image, ref if ref is not None and str(ref) in image.names else None))
    if args.output:
        try:
            archive.save_to(store, items, Path(args.output), formats=formats)
        except OSError as e:
            raise SupervisorError(f"supervise save: {args.output}: {e.strerror}") from e
        return 0
    if sys.stdout.isatty():
        raise UsageError("supervise save: refusing to write an archive to a terminal "
                         "(name a file with -o, or redirect)")
    sys.stdout.flush()
    archive.save(store, items, sys.stdout.buffer, formats=formats)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from supervisor.errors import UsageError
    from supervisor.images import archive

    store = _store()
    if args.input:
        try:
            with open(args.input, "rb") as f:
                loaded = archive.load(store, f, args.input)
        except OSError as e:
            raise SupervisorError(f"supervise load: {args.input}: {e.strerror}") from e
    elif sys.stdin.isatty():
        raise UsageError("supervise load: no archive (name one with -i, or redirect stdin)")
    else:
        loaded = archive.load(store, sys.stdin.buffer, "stdin")
    for item in loaded:
        for ref in item.names:
            print(f"Loaded image: {ref.familiar()}")
        if not item.names:
            print(f"Loaded image ID: {item.image.id}")
    return 0


def register(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    b = sub.add_parser("build", help="build an image from a Containerfile/Dockerfile")
    b.add_argument("-t", "--tag", action="append", metavar="NAME[:TAG]")
    b.add_argument("-f", "--file", metavar="FILE")
    b.add_argument("--build-arg", action="append", metavar="K=V")
    b.add_argument("--no-cache", action="store_true")
    b.add_argument("--network", choices=["default", "none"], default="default",
                   help="RUN steps' network: a private one with outbound access (default), "
                   "or none")
    b.add_argument("context", metavar="DIR")
    b.set_defaults(func=cmd_build)

    i = sub.add_parser("images", help="list images")
    i.add_argument("-q", "--quiet", action="store_true")
    i.set_defaults(func=cmd_images)

    t = sub.add_parser("tag", help="name an image")
    t.add_argument("source", metavar="IMAGE")
    t.add_argument("target", metavar="NAME[:TAG]")
    t.set_defaults(func=cmd_tag)

    r = sub.add_parser("rmi", help="remove images (refused while a container uses one)")
    r.add_argument("-f", "--force", action="store_true")
    r.add_argument("names", nargs="+", metavar="IMAGE")
    r.set_defaults(func=cmd_rmi)

    h = sub.add_parser("history", help="the layers of an image")
    h.add_argument("--no-trunc", action="store_true")
    h.add_argument("image", metavar="IMAGE")
    h.set_defaults(func=cmd_history)

    im = sub.add_parser("image", help="manage images")
    isub = im.add_subparsers(dest="image_verb", metavar="COMMAND", parser_class=parser_class,
                             required=True)
    isub.add_parser("prune", help="remove the build cache and unused images and layers")
    im.set_defaults(func=cmd_image)

    d = sub.add_parser("diff", help="files a container added (A), changed (C), deleted (D)")
    d.add_argument("name", metavar="CONTAINER")
    d.set_defaults(func=cmd_diff)

    c = sub.add_parser("commit", help="a new image from a container's changes")
    c.add_argument("-a", "--author")
    c.add_argument("-m", "--message")
    c.add_argument("name", metavar="CONTAINER")
    c.add_argument("target", nargs="?", metavar="NAME[:TAG]")
    c.set_defaults(func=cmd_commit)

    s = sub.add_parser("save", help="images to a tar archive (OCI and `docker save` formats)")
    s.add_argument("-o", "--output", metavar="FILE", help="else standard output")
    s.add_argument("--format", choices=["oci-archive", "docker-archive"],
                   help="only this format (default: both in one archive, as Docker's)")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    s.set_defaults(func=cmd_save)

    ld = sub.add_parser("load", help="images from a tar archive (OCI or `docker save`)")
    ld.add_argument("-i", "--input", metavar="FILE", help="else standard input")
    ld.set_defaults(func=cmd_load)

    from supervisor import cli_registry

    cli_registry.register(sub)

