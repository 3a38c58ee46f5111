"""The registry verbs of the command line: push, pull, login, logout.

Like the other image verbs they work on the store in this process.  Progress goes to stderr,
the result (the digest pushed, the name pulled) to stdout.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from supervisor.cli_images import _store
from supervisor.errors import SupervisorError


def cmd_push(args: argparse.Namespace) -> int:
    from supervisor.images import auth, transfer
    from supervisor.images.reference import parse

    store = _store()
    image = store.resolve(args.image)
    ref = parse(args.destination or args.image, where="supervise push")
    if ref.domain == "docker.io" and args.destination is None and not image.names:
        raise SupervisorError(f"supervise push: {args.image}: name a destination "
                              "(NAME[:TAG]) for an image given by its ID")
    print(f"The push refers to repository [{ref.familiar_repository}]", file=sys.stderr)
    digest = transfer.push(store, image, ref, creds=auth.lookup(ref.domain),
                           progress=transfer.Progress())
    size = store.blob_path(image.manifest_digest).stat().st_size
    print(f"{ref.tag or 'latest'}: digest: {digest} size: {size}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from supervisor.images import auth, transfer
    from supervisor.images.reference import parse

    ref = parse(args.name, where="supervise pull")
    if not args.quiet:
        print(f"{ref.tag or ref.digest}: Pulling from {ref.familiar_repository}",
              file=sys.stderr)
    progress = transfer.Progress(quiet=args.quiet)
    image = transfer.pull(_store(), ref, creds=auth.lookup(ref.domain), progress=progress)
    if not args.quiet:
        print(f"Digest: {image.manifest_digest}", file=sys.stderr)
    print(ref.familiar())
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    import getpass

    from supervisor.errors import UsageError
    from supervisor.images import auth
    from supervisor.images.reference import DEFAULT_DOMAIN
    from supervisor.images.registry import Registry

    server = args.server or DEFAULT_DOMAIN
    for prefix in ("https://", "http://"):
        server = server.removeprefix(prefix)
    server = server.rstrip("/")
    username = args.username
    if args.password_stdin:
        if not username:
            raise UsageError("supervise login: --password-stdin needs --username")
        password = sys.stdin.readline().rstrip("\n")
    elif args.password is not None:
        password = args.password
    else:
        if not sys.stdin.isatty():
            raise UsageError("supervise login: no terminal to ask for the password "
                             "(use --password-stdin)")
        username = username or input("Username: ")
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise UsageError("supervise login: a username and a password are needed")
    creds = auth.Credentials(username, password)
    with Registry(server, "", creds=creds) as reg:
        reg.ping()
    path = auth.store(server, creds)
    print(f"Login Succeeded (credentials in {path})")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    from supervisor.images import auth
    from supervisor.images.reference import DEFAULT_DOMAIN

    server = args.server or DEFAULT_DOMAIN
    if not auth.remove(server):
        print(f"Not logged in to {server}", file=sys.stderr)
        return 0
    print(f"Removing login credentials for {server}")
    return 0


def register(sub: Any) -> None:
    pu = sub.add_parser("push", help="send an image to a registry (only the blobs it lacks)")
    pu.add_argument("image", metavar="IMAGE")
    pu.add_argument("destination", nargs="?", metavar="NAME[:TAG]",
                    help="push under this name (default: IMAGE's own)")
    pu.set_defaults(func=cmd_push)

    pl = sub.add_parser("pull", help="fetch an image from a registry")
    pl.add_argument("-q", "--quiet", action="store_true")
    pl.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    pl.set_defaults(func=cmd_pull)

    li = sub.add_parser("login", help="store credentials for a registry (mode 0600)")
    li.add_argument("-u", "--username")
    li.add_argument("-p", "--password")
    li.add_argument("--password-stdin", action="store_true")
    li.add_argument("server", nargs="?", metavar="REGISTRY", help="default: docker.io")
    li.set_defaults(func=cmd_login)

    lo = sub.add_parser("logout", help="forget a registry's credentials")
    lo.add_argument("server", nargs="?", metavar="REGISTRY")
    lo.set_defaults(func=cmd_logout)
