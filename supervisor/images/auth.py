"""Registry credentials: what `login` stores and push/pull send.

The file is per user, as Docker's and Podman's are: ``$XDG_CONFIG_HOME/supervise/auth.json``,
else ``~/.config/supervise/auth.json`` (mode 0600 in a 0700 folder, written aside and renamed).
Its shape is Docker's ``config.json`` ``auths`` map, ``{"auths": {"localhost:5000": {"auth":
base64("user:password")}}}``, so an entry can be copied either way.  A registry we have no
entry for is looked up, read-only, in Docker's own file (``$DOCKER_CONFIG/config.json``, else
``~/.docker/config.json``); credential helpers are not run.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.errors import SupervisorError

# Docker keys Docker Hub's credentials by its v1 address.
DOCKER_HUB_KEYS = ("docker.io", "https://index.docker.io/v1/", "index.docker.io",
                   "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never a password in a traceback or a log
        return f"Credentials(username={self.username!r})"


def auth_file(environ: Mapping[str, str] = os.environ) -> Path:
    config_home = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "supervise" / "auth.json"


def docker_file(environ: Mapping[str, str] = os.environ) -> Path:
    folder = environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(folder) / "config.json"


def _keys(registry: str) -> tuple[str, ...]:
    return DOCKER_HUB_KEYS if registry in DOCKER_HUB_KEYS else (registry,)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise SupervisorError(f"{path}: not a readable credentials file ({e})") from e
    if not isinstance(data, dict):
        return {}
    if not isinstance(data.get("auths", {}), dict):
        raise SupervisorError(f"{path}: auths: expected an object of registries, got "
                              f"{type(data['auths']).__name__}")
    return data


def _decode(entry: object) -> Credentials | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("auth"), str):
        return None
    try:
        user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return Credentials(user, password) if sep else None


def lookup(registry: str, environ: Mapping[str, str] = os.environ) -> Credentials | None:
    """Ours first, then Docker's file."""
    for path in (auth_file(environ), docker_file(environ)):
        auths = _read(path).get("auths") or {}
        for key in _keys(registry):
            found = _decode(auths.get(key))
            if found is not None:
                return found
    return None


def store(registry: str, creds: Credentials, environ: Mapping[str, str] = os.environ) -> Path:
    path = auth_file(environ)
    data = _read(path)
    auths = data.setdefault("auths", {})
    for key in _keys(registry):
        auths.pop(key, None)
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    auths[_keys(registry)[0]] = {"auth": token}
    _write(path, data)
    return path


def remove(registry: str, environ: Mapping[str, str] = os.environ) -> bool:
    path = auth_file(environ)
    data = _read(path)
    auths = data.get("auths") or {}
    found = [k for k in _keys(registry) if k in auths]
    for key in found:
        del auths[key]
    if found:
        _write(path, data)
    return bool(found)


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".auth-", dir=path.parent)  # made 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
