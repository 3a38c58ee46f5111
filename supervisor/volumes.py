"""Named and anonymous volumes: folders under the project's state directory.

A named volume `data` of project `p` is shown as `p_data` (Compose's naming) and lives in
`<state>/p/volumes/data/_data`, beside a `volume.json` (Docker's inspect shape).  Anonymous
volumes get a random 64-hex name and go with their container when it is removed with `--rm`
or `down -v`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from supervisor.errors import SupervisorError
from supervisor.paths import ProjectPaths
from supervisor.protocol import ContainerRecord, VolumeRecord


class VolumeError(SupervisorError):
    """A volume is missing, in use or cannot be made."""


class Volumes:
    def __init__(self, paths: ProjectPaths) -> None:
        self.paths = paths

    def _dir(self, name: str) -> Path:
        return self.paths.volumes / name

    def short_name(self, name: str) -> str:
        """Accepts `data` or `<project>_data`."""
        prefix = f"{self.paths.project}_"
        if not self._dir(name).exists() and name.startswith(prefix):
            return name[len(prefix):]
        return name

    def display_name(self, name: str) -> str:
        return name if self._is_anonymous(name) else f"{self.paths.project}_{name}"

    def _is_anonymous(self, name: str) -> bool:
        return len(name) == 64 and all(c in "0123456789abcdef" for c in name)

    def ensure(self, name: str) -> Path:
        """The data folder of a volume, made on first use (as `docker run -v name:/x`)."""
        data = self._dir(name) / "_data"
        if not data.is_dir():
            try:
                self.paths.ensure_private()
                data.mkdir(parents=True, exist_ok=True)
                labels = {"com.docker.compose.project": self.paths.project}
                if not self._is_anonymous(name):
                    labels["com.docker.compose.volume"] = name
                record = VolumeRecord(
                    name=self.display_name(name), mountpoint=str(data),
                    created_at=datetime.now(UTC).isoformat(timespec="seconds"), labels=labels)
                (self._dir(name) / "volume.json").write_bytes(msgspec.json.encode(record))
            except OSError as e:
                raise VolumeError(f"volume {name}: {e.strerror}: {e.filename}") from e
        return data

    def new_anonymous(self) -> tuple[str, Path]:
        name = secrets.token_hex(32)
        return name, self.ensure(name)

    def names(self) -> list[str]:
        if not self.paths.volumes.is_dir():
            return []
        return sorted(p.name for p in self.paths.volumes.iterdir() if (p / "_data").is_dir())

    def inspect(self, name: str) -> VolumeRecord:
        name = self.short_name(name)
        meta = self._dir(name) / "volume.json"
        try:
            return msgspec.json.decode(meta.read_bytes(), type=VolumeRecord)
        except FileNotFoundError:
            raise VolumeError(f"volume {name}: no such volume") from None

    def users(self, name: str, records: list[ContainerRecord]) -> list[str]:
        return [r.name for r in records if any(m.type == "volume" and m.name == name
                                               for m in r.mounts)]

    def remove(self, name: str, records: list[ContainerRecord], force: bool = False) -> None:
        """Refuses a volume that a container (running or not) still uses, as Docker does."""
        name = self.short_name(name)
        if not self._dir(name).exists():
            raise VolumeError(f"volume {name}: no such volume")
        users = self.users(name, records)
        if users and not force:
            raise VolumeError(
                f"volume {self.display_name(name)}: volume is in use - [{', '.join(users)}]")
        shutil.rmtree(self._dir(name))


def remove_tree(path: Path) -> None:
    """rm -r that tolerates a missing path.  Overlay work dirs hold 000 dirs, so real
    directories are made searchable first; the tree is the container's, so a symlink in it
    is never followed (a chmod through `ln -s / x` would change the host's /)."""
    if not path.is_dir() or path.is_symlink():
        return
    for root, dirs, _files in os.walk(path):  # os.walk does not descend into symlinks
        for d in dirs:
            full = os.path.join(root, d)
            if stat.S_ISDIR(os.lstat(full).st_mode):
                os.chmod(full, 0o700, follow_symlinks=False)
    shutil.rmtree(path)
