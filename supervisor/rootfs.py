"""Read-only lower layers that supervise makes itself: the reserved image `host`.

`host` is like `scratch` in a Dockerfile, but with the host's programs: a tiny base layer
holding the merged-/usr symlinks and a generated /etc, with the host's /usr bound read-only
on top at run time.  Never the host's /etc wholesale: only passwd and group entries (so
packaged daemons find their users), nsswitch.conf, and the symlink farms packaged programs
resolve through (/etc/alternatives).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

HOST_IMAGE = "host"

_DIRS = ("usr", "etc", "tmp", "var/tmp", "var/log", "var/lib", "var/cache", "root", "home",
         "proc", "dev", "sys", "run", "mnt", "opt", "srv")
_NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"


def host_base_layer(layers_dir: Path) -> Path:
    """The `host` image's base layer, made once per project and then read-only.

    Made in a temporary folder and renamed into place, so a crash never leaves half a layer
    (a lower layer must not change under a mounted overlay)."""
    final = layers_dir / HOST_IMAGE
    if final.is_dir():
        return final
    layers_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".host-", dir=layers_dir))
    for d in _DIRS:
        (tmp / d).mkdir(parents=True, exist_ok=True)
    os.chmod(tmp / "tmp", 0o1777)
    os.chmod(tmp / "var/tmp", 0o1777)
    os.chmod(tmp / "root", 0o700)
    # Debian's merged /usr: /bin, /lib... are symlinks into /usr.
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            os.symlink(os.readlink(host), tmp / name)
        elif host.is_dir():
            os.symlink(f"usr/{name}", tmp / name)
    etc = tmp / "etc"
    for name in ("passwd", "group"):
        src = Path("/etc") / name
        if src.exists():
            shutil.copyfile(src, etc / name)
    (etc / "nsswitch.conf").write_text(_NSSWITCH)
    if Path("/etc/alternatives").is_dir():
        shutil.copytree("/etc/alternatives", etc / "alternatives", symlinks=True)
    if Path("/etc/localtime").is_symlink():
        os.symlink(os.readlink("/etc/localtime"), etc / "localtime")
    for name in ("hostname", "hosts", "resolv.conf"):
        (etc / name).touch()  # bind targets: per-container files are mounted on them
    os.symlink("../proc/self/mounts", etc / "mtab")
    try:
        tmp.rename(final)
    except OSError:
        shutil.rmtree(tmp)  # another process made it first
    return final
