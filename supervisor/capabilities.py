"""Linux capability names and numbers, and Docker's default set (pure data)."""

from __future__ import annotations

CAPABILITIES: dict[str, int] = {name: number for number, name in enumerate([
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
])}

# moby's oci/caps/defaults.go, less MKNOD: Docker can grant MKNOD because runc's device
# cgroup allow-list makes a node useless; supervise has no device cgroup yet, so a node of
# the host's disk would be readable and writable.  `cap_add = ["MKNOD"]` still grants it
# (and the rootfs and volumes are mounted nodev all the same).
DOCKER_DEFAULT: tuple[str, ...] = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
)


def effective_set(cap_add: list[str], cap_drop: list[str]) -> set[str]:
    """moby's TweakCapabilities: add ALL wins over drops; drop ALL keeps only the adds."""
    if "ALL" in cap_add:
        return set(CAPABILITIES) - set(cap_drop)
    if "ALL" in cap_drop:
        return set(cap_add)
    return (set(DOCKER_DEFAULT) - set(cap_drop)) | set(cap_add)
