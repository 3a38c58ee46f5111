"""The busybox root filesystem tests and benchmarks run containers in (no pytest here:
bench/ imports it too)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX = shutil.which("busybox") or "/usr/bin/busybox"


def build_busybox_rootfs(root: Path) -> None:
    """busybox-static plus applet symlinks, merged-/usr style (kernel-recipes §1)."""
    for d in ("bin", "usr", "etc", "tmp", "root", "proc", "dev", "sys", "var/log"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", root / "bin" / applet)
    for name in ("sbin", "lib", "lib64"):
        os.symlink(f"usr/{name}" if name != "sbin" else "bin", root / name)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                     "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    os.chmod(root / "tmp", 0o1777)
