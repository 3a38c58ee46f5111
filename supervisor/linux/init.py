"""The fork server: a small single-threaded process that makes containers.

Why a separate process: unshare/setns/pivot_root act on the calling thread, and fork() from
the threaded trio supervisor is unsafe.  Why a *server*: Python's start-up (~10 ms) would be
most of a container's start time; a server started once forks in ~1 ms (kernel-recipes §1).

Run by path, stdlib only, so it needs neither site-packages nor the supervisor package:

    python -I -S .../supervisor/linux/init.py FD

FD is one end of an AF_UNIX SOCK_SEQPACKET socketpair.  Each request is one datagram: a
``marshal``-encoded dict plus file descriptors (SCM_RIGHTS); each reply is one datagram, a
``marshal``-encoded dict.  EOF on the socket ends the server.

``op = "run"``: fds = [stdin, stdout, stderr, status_w] (+ [sync_r] when ``sync``).  The server
clones the container's PID 1 in new namespaces with CLONE_PARENT, so PID 1 is born a child of
the supervisor, which waits on it itself (no waiter process; no reparenting race, recipes §2)
and one clone replaces the classic fork-unshare-fork.  PID 1 joins its cgroups, unshares its
cgroup namespace, builds the root filesystem and execs; ``status_w`` is close-on-exec, so EOF
on it means the exec happened, and ``"CODE message"`` on it means set-up or exec failed with
exit CODE.  The reply is ``{"pid": N}`` (host pid) or ``{"error": text}``.

``op = "exec"``: fds = [stdin, stdout, stderr, status_w]; an intermediate joins a running
container (its namespaces, root and cgroups) and forks the extra process, which is reported
the same way.  The server reaps the intermediate before replying, so the process has been
reparented to the supervisor (a child subreaper) by then.

The raw clone() skips Python's after-fork hooks: safe here because this process never starts
a thread, and the child only makes syscalls before it execs.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import marshal
import os
import resource
import signal
import socket
import struct
import sys
from typing import Any, NoReturn

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
ALL_NAMESPACES = (
    CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
)

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 1

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

SIOCSIFFLAGS = 0x8914
SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
SIOCADDRT = 0x890B
RTF_UP = 0x1
RTF_GATEWAY = 0x2
IFF_UP = 0x1
TIOCSCTTY = 0x540E

# Syscall numbers glibc has no wrapper for (or only a recent one).
_SYSCALLS = {
    "x86_64": {"clone": 56, "pivot_root": 155, "mount_setattr": 442, "move_mount": 429,
               "fsopen": 430, "fsconfig": 431, "fsmount": 432},
    "aarch64": {"clone": 220, "pivot_root": 41, "mount_setattr": 442, "move_mount": 429,
                "fsopen": 430, "fsconfig": 431, "fsmount": 432},
}[os.uname().machine]
CLONE_PARENT = 0x00008000

# moby's oci/defaults.go (the supervisor sends these; a warm PID 1 applies them ahead)
MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
STAGED = ("proc", "sys", "dev")
DEFAULT_SHM = 64 << 20

# Exit codes as Docker's: 125 supervise failed, 126 not executable, 127 not found.
EXIT_SETUP = 125
EXIT_NOEXEC = 126
EXIT_NOTFOUND = 127

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.unshare.argtypes = [ctypes.c_int]
libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]
libc.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]


class SetupError(Exception):
    """A step of building the container failed; carries the exit code to report."""

    def __init__(self, message: str, code: int = EXIT_SETUP) -> None:
        super().__init__(message)
        self.code = code


def _b(s: str | None) -> bytes | None:
    return None if s is None else s.encode()


def _check(rc: int, what: str) -> int:
    if rc < 0:
        e = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(e)}")
    return rc


def mount(src: str | None, tgt: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    _check(libc.mount(_b(src), _b(tgt), _b(fstype), flags, _b(data)), f"mount {tgt}")


_OPTIONS_MAX = 4000  # mount(2)'s options are one page: ~40 layers of absolute paths
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_CREATE = 6
_MOVE_MOUNT_F_EMPTY_PATH = 4
_MOUNT_ATTR_NODEV = 4


def _syscall(name: str, *args: object) -> int:
    return int(libc.syscall(ctypes.c_long(_SYSCALLS[name]), *args))


def mount_overlay(target: str, lower: list[str], upper: str, work: str) -> None:
    """An overlay, nodev, lower layers top first.  Past a page of options (an image of
    more than ~40 layers) the layers go one by one through the new mount API's
    `lowerdir+` (Linux 6.8), which has no such limit."""
    options = f"lowerdir={':'.join(lower)},upperdir={upper},workdir={work}"
    if len(options) < _OPTIONS_MAX:
        mount("overlay", target, "overlay", MS_NODEV, options)
        return
    fs = _syscall("fsopen", ctypes.c_char_p(b"overlay"), ctypes.c_uint(1))  # FSOPEN_CLOEXEC
    _check(fs if fs < 0 else 0, f"fsopen overlay for {target}")
    try:
        for key, value in [*(("lowerdir+", p) for p in lower), ("upperdir", upper),
                           ("workdir", work)]:
            _check(_syscall("fsconfig", ctypes.c_int(fs), ctypes.c_uint(_FSCONFIG_SET_STRING),
                            ctypes.c_char_p(key.encode()), ctypes.c_char_p(value.encode()),
                            ctypes.c_int(0)), f"overlay {key} {value}")
        _check(_syscall("fsconfig", ctypes.c_int(fs), ctypes.c_uint(_FSCONFIG_CMD_CREATE),
                        ctypes.c_void_p(0), ctypes.c_void_p(0), ctypes.c_int(0)),
               f"overlay of {len(lower)} layers at {target}")
        mnt = _syscall("fsmount", ctypes.c_int(fs), ctypes.c_uint(1),  # FSMOUNT_CLOEXEC
                       ctypes.c_uint(_MOUNT_ATTR_NODEV))
        _check(mnt if mnt < 0 else 0, f"fsmount {target}")
        try:
            _check(_syscall("move_mount", ctypes.c_int(mnt), ctypes.c_char_p(b""),
                            ctypes.c_int(AT_FDCWD), ctypes.c_char_p(target.encode()),
                            ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH)), f"move_mount {target}")
        finally:
            os.close(mnt)
    finally:
        os.close(fs)


def make_readonly(path: str, flags: int) -> None:
    """Read-only, recursively: mount_setattr (5.12+); MS_REMOUNT ignores MS_REC."""

    class MountAttr(ctypes.Structure):
        _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                    ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]

    extra = 0
    for ms, ma in ((MS_NOSUID, 0x2), (MS_NODEV, 0x4), (MS_NOEXEC, 0x8)):  # MOUNT_ATTR_*
        if flags & ms:
            extra |= ma
    attr = MountAttr(MOUNT_ATTR_RDONLY | extra, 0, 0, 0)
    rc = libc.syscall(_SYSCALLS["mount_setattr"], AT_FDCWD, _b(path), AT_RECURSIVE,
                      ctypes.byref(attr), ctypes.sizeof(attr))
    if rc == 0:
        return
    # The remount resets nosuid/nodev/noexec unless they are passed again.
    mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | flags)


def _statvfs_flags(path: str) -> int:
    f = os.statvfs(path).f_flag
    # ST_* and MS_* share their values for these bits.
    return f & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)


def secure_join(root: str, path: str) -> str:
    """`root/path` with every symlink resolved *inside* root, so a bind never escapes it."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root + "/" + "/".join([*resolved, part])
        try:
            target = os.readlink(candidate)
        except OSError:
            resolved.append(part)
            continue
        hops += 1
        if hops > 40:
            raise SetupError(f"{path}: too many levels of symbolic links")
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return root + "/" + "/".join(resolved)


def _mkdirs(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        pass


def _make_target(path: str, is_dir: bool) -> None:
    if is_dir:
        _mkdirs(path)
    elif not os.path.lexists(path):
        _mkdirs(os.path.dirname(path))
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def do_mounts(root: str, mounts: list[dict[str, Any]]) -> None:
    for m in mounts:
        dst = secure_join(root, m["target"])
        kind = m["type"]
        if kind == "bind":
            src = m["source"]
            try:
                is_dir = os.path.isdir(src)
            except OSError as e:
                raise SetupError(f"bind {src}: {os.strerror(e.errno or 0)}") from None
            if not os.path.exists(src):
                raise SetupError(f"bind source {src}: no such file or directory")
            _make_target(dst, is_dir)
            mount(src, dst, None, MS_BIND | MS_REC)
            # nodev on every bind (a remount of the bind's flags), read-only when asked
            flags = _statvfs_flags(dst) | MS_NODEV
            if m.get("read_only"):
                make_readonly(dst, flags)
            else:
                mount(None, dst, None, MS_BIND | MS_REMOUNT | flags)
        elif kind == "tmpfs":
            _make_target(dst, True)
            mount("tmpfs", dst, "tmpfs", m.get("flags", MS_NOSUID | MS_NODEV), m.get("data"))
        else:
            raise SetupError(f"unknown mount type {kind!r}")


def setup_dev(root: str, shm_size: int | None) -> None:
    dev = root + "/dev"
    _make_target(dev, True)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
    for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7),
                               ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)):
        os.mknod(f"{dev}/{name}", 0o666 | 0o020000, os.makedev(major, minor))
        os.chmod(f"{dev}/{name}", 0o666)  # mknod's mode is masked by the umask
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                         ("ptmx", "pts/ptmx")):
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(f"{dev}/pts", 0o755)
    mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC,
          "newinstance,ptmxmode=0666,mode=0620,gid=5")
    os.mkdir(f"{dev}/shm", 0o1777)
    mount("shm", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
          f"mode=1777,size={shm_size or 64 << 20}")
    os.mkdir(f"{dev}/mqueue", 0o755)
    mount("mqueue", f"{dev}/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def mask_paths(root: str, masked: list[str], readonly: list[str]) -> None:
    """Docker's masked and read-only /proc and /sys paths."""
    for path in masked:
        dst = root + path
        if os.path.isdir(dst):
            mount("tmpfs", dst, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
        elif os.path.exists(dst):
            mount(root + "/dev/null", dst, None, MS_BIND)
    for path in readonly:
        dst = root + path
        if os.path.exists(dst):
            mount(dst, dst, None, MS_BIND | MS_REC)
            make_readonly(dst, MS_NOSUID | MS_NODEV | MS_NOEXEC)


def kernel_mounts(root: str, shm_size: int | None, masked: list[str],
                  readonly: list[str]) -> None:
    """/proc, /sys and /dev under `root`, with Docker's masked and read-only paths."""
    proc = root + "/proc"
    _make_target(proc, True)
    mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    setup_dev(root, shm_size)
    sys_dir = root + "/sys"
    _make_target(sys_dir, True)
    mount("sysfs", sys_dir, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mask_paths(root, masked, readonly)


def prestage() -> bool:
    """A warm PID 1's work before it has a spec: a private mount namespace, /proc, /sys and
    /dev (it is already PID 1 of its pid namespace and alone in its network namespace) made
    under the staging folder, and loopback up.  On a request they are moved into the root
    (MS_MOVE): ~1.5 ms less on the start path.  False: do everything the usual way."""
    try:
        mount(None, "/", None, MS_REC | MS_PRIVATE)  # / is shared on systemd hosts
        os.setsid()
        mount("tmpfs", _STAGING, "tmpfs", MS_NOSUID, "mode=700,size=64k")
        kernel_mounts(_STAGING, DEFAULT_SHM, MASKED_PATHS, READONLY_PATHS)
        loopback_up()
    except (SetupError, OSError):
        return False
    return True


def build_root(spec: dict[str, Any], staged: bool = False) -> None:
    """Overlay rootfs, volumes, /proc, /dev, /sys; pivot into it."""
    root = spec["merged"]
    if not staged:
        mount(None, "/", None, MS_REC | MS_PRIVATE)  # / is shared on systemd hosts
    # nodev: a device node on the rootfs or a volume never opens a device (only /dev's do)
    mount_overlay(root, spec["lower"], spec["upper"], spec["work"])
    do_mounts(root, spec["mounts"])
    if staged:
        for name in STAGED:
            _make_target(f"{root}/{name}", True)
            mount(f"{_STAGING}/{name}", f"{root}/{name}", None, MS_MOVE)
        shm = spec.get("shm_size") or DEFAULT_SHM
        if shm != DEFAULT_SHM:
            mount(None, root + "/dev/shm", None,
                  MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=1777,size={shm}")
    else:
        kernel_mounts(root, spec.get("shm_size"), spec.get("masked", []),
                      spec.get("readonly_paths", []))
    init = spec.get("init_binary")
    if init:
        _make_target(root + "/dev/init", False)
        mount(init, root + "/dev/init", None, MS_BIND)
        make_readonly(root + "/dev/init", MS_NOSUID | MS_NODEV)
    cwd = spec.get("cwd") or "/"
    _mkdirs(secure_join(root, cwd))  # Docker creates a missing working_dir
    os.chdir(root)
    _check(libc.syscall(_SYSCALLS["pivot_root"], b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")
    if spec.get("read_only"):
        mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | _statvfs_flags("/"))


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", IFF_UP))


class _SockAddr(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort), ("data", ctypes.c_char * 14)]


class _RtEntry(ctypes.Structure):  # <net/route.h>, for SIOCADDRT
    _fields_ = [("pad1", ctypes.c_ulong), ("dst", _SockAddr), ("gateway", _SockAddr),
                ("genmask", _SockAddr), ("flags", ctypes.c_ushort), ("pad2", ctypes.c_short),
                ("pad3", ctypes.c_ulong), ("pad4", ctypes.c_void_p), ("metric", ctypes.c_short),
                ("dev", ctypes.c_char_p), ("mtu", ctypes.c_ulong), ("window", ctypes.c_ulong),
                ("irtt", ctypes.c_ushort)]


def _sockaddr_in(address: str) -> bytes:
    return struct.pack("=H2s4s8x", socket.AF_INET, b"\0\0", socket.inet_aton(address))


def configure_eth0(net: dict[str, Any]) -> None:
    """eth0's address, up, and the default route: three ioctls here instead of a netlink
    socket in this namespace on the supervisor's side (the veth was made there, already
    carrying its MAC)."""
    mask = socket.inet_ntoa(struct.pack("!I", (0xFFFFFFFF << (32 - net["prefixlen"]))
                                        & 0xFFFFFFFF))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for request, value in ((SIOCSIFADDR, net["address"]), (SIOCSIFNETMASK, mask)):
            fcntl.ioctl(s.fileno(), request, struct.pack("16s16s", b"eth0",
                                                         _sockaddr_in(value)))
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"eth0", IFF_UP))
        if net.get("gateway"):
            rt = _RtEntry()
            ctypes.memmove(ctypes.byref(rt.dst), _sockaddr_in("0.0.0.0"), 16)
            ctypes.memmove(ctypes.byref(rt.genmask), _sockaddr_in("0.0.0.0"), 16)
            ctypes.memmove(ctypes.byref(rt.gateway), _sockaddr_in(net["gateway"]), 16)
            rt.flags = RTF_UP | RTF_GATEWAY
            fcntl.ioctl(s.fileno(), SIOCADDRT, bytes(rt))


def _read_table(path: str) -> list[list[str]]:
    try:
        with open(path) as f:
            return [line.rstrip("\n").split(":") for line in f if line.count(":") >= 2]
    except OSError:
        return []


def resolve_user(user: str | None, env: dict[str, str]) -> tuple[int, int, list[int], str]:
    """uid, gid, supplementary groups and home from the container's own /etc (Docker's rules)."""
    if not user:
        # root, as Docker's default; skip parsing passwd/group (~0.3 ms) for the common case
        return 0, 0, [], "/root"
    name_or_uid, _, group = user.partition(":")
    passwd = _read_table("/etc/passwd")
    entry = next((e for e in passwd if e[0] == name_or_uid or
                  (name_or_uid.isdigit() and len(e) > 2 and e[2] == name_or_uid)), None)
    if entry is not None and len(entry) >= 6:
        uid, gid, home, uname = int(entry[2]), int(entry[3]), entry[5], entry[0]
    elif name_or_uid.isdigit():
        uid, gid, home, uname = int(name_or_uid), 0, "/", ""  # Docker: unknown uid -> gid 0
    else:
        raise SetupError(f"unable to find user {name_or_uid}: no matching entries in passwd file")
    groups_table = _read_table("/etc/group")
    if group:
        g = next((e for e in groups_table if e[0] == group or e[2] == group), None)
        if g is not None:
            gid = int(g[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise SetupError(f"unable to find group {group}: no matching entries in group file")
    extra = sorted({int(e[2]) for e in groups_table
                    if len(e) >= 4 and uname and uname in e[3].split(",")} - {gid})
    if uid == 0 and not home:
        home = "/root"
    return uid, gid, extra, home or "/"


def drop_bounding_set(keep: list[int], last_cap: int) -> None:
    keep_set = set(keep)
    for cap in range(last_cap + 1):
        if cap not in keep_set:
            rc = libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
            if rc < 0 and ctypes.get_errno() != errno.EINVAL:
                _check(rc, f"drop capability {cap}")


def set_capabilities(keep: list[int]) -> None:
    """Effective, permitted and inheritable = keep (for root, exec keeps them)."""
    mask = 0
    for cap in keep:
        mask |= 1 << cap
    lo, hi = mask & 0xFFFFFFFF, mask >> 32
    header = ctypes.create_string_buffer(struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0))
    data = ctypes.create_string_buffer(struct.pack("6I", lo, lo, lo, hi, hi, hi))
    _check(libc.capset(header, data), "capset")


def _non_default_signals() -> list[int]:
    """Signals whose disposition is not the default in this server (measured once: resetting
    all 64 in every container costs ~0.2 ms)."""
    out = []
    for sig in range(1, signal.NSIG):
        try:
            if signal.getsignal(sig) not in (signal.SIG_DFL, None):
                out.append(sig)
        except (OSError, ValueError):
            pass
    return out


def reset_signals() -> None:
    """Python ignores SIGPIPE (and more); an ignored disposition survives exec (recipes §8)."""
    for sig in _NON_DEFAULT_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def become_process(spec: dict[str, Any], stdio: list[int], status: int) -> NoReturn:
    """The common tail of `run` and `exec`: identity, limits, stdio, signals, exec."""
    env = dict(spec["env"])
    uid, gid, groups, home = resolve_user(spec.get("user"), env)
    env.setdefault("HOME", home)
    for res, soft, hard in spec.get("rlimits", []):
        try:
            resource.setrlimit(res, (soft, hard))
        except (OSError, ValueError) as e:
            raise SetupError(f"setrlimit {res} {soft}:{hard}: {e}") from None
    drop_bounding_set(spec["caps"], spec["last_cap"])  # needs CAP_SETPCAP: before setuid
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    if uid == 0:  # a non-root user lost them all at setuid, as Docker's non-root users do
        set_capabilities(spec["caps"])
    if spec.get("no_new_privs", True):
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    cwd = spec.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as e:
        raise SetupError(f"chdir to cwd ({cwd!r}): {os.strerror(e.errno or 0)}") from None
    for i, fd in enumerate(stdio):
        if fd != i:
            os.dup2(fd, i)
    os.closerange(3, status)
    os.closerange(status + 1, 1 << 16)
    os.set_inheritable(status, False)
    if spec.get("tty"):
        fcntl.ioctl(0, TIOCSCTTY, 0)
    reset_signals()
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            where = "executable file not found in $PATH" if "/" not in argv[0] else \
                "no such file or directory"
            raise SetupError(f'exec: "{argv[0]}": {where}', EXIT_NOTFOUND) from None
        raise SetupError(f'exec: "{argv[0]}": {os.strerror(e.errno or 0).lower()}',
                         EXIT_NOEXEC) from None
    raise AssertionError("unreachable")


def _fail(status: int, err: BaseException) -> NoReturn:
    code = err.code if isinstance(err, SetupError) else EXIT_SETUP
    msg = str(err) if isinstance(err, SetupError) else f"{type(err).__name__}: {err}"
    try:
        os.write(status, f"{code} {msg}".encode(errors="replace")[:4000])
    finally:
        os._exit(code)


def container_main(spec: dict[str, Any], fds: list[int], staged: bool = False) -> NoReturn:
    """PID 1 of a new container, until exec."""
    status = fds[3]
    try:
        if not staged:
            os.setsid()
        build_root(spec, staged)
        hostname = spec.get("hostname")
        if hostname:
            _check(libc.sethostname(hostname.encode(), len(hostname.encode())), "sethostname")
        if not staged:
            loopback_up()
        if spec.get("sync"):
            # The supervisor wires the network meanwhile; EOF without a byte means give up.
            if os.read(fds[4], 1) != b"g":
                os._exit(EXIT_SETUP)
            os.close(fds[4])
        if spec.get("net"):
            try:
                configure_eth0(spec["net"])
            except OSError as e:
                raise SetupError(f"network: eth0: {e.strerror}") from e
        become_process(spec, fds[:3], status)
    except BaseException as e:
        _fail(status, e)


def exec_main(spec: dict[str, Any], fds: list[int], root_fd: int) -> NoReturn:
    """An extra process inside a running container, after setns."""
    status = fds[3]
    try:
        os.fchdir(root_fd)
        os.chroot(".")
        os.close(root_fd)
        os.setsid()
        become_process(spec, fds[:3], status)
    except BaseException as e:
        _fail(status, e)


def _join_cgroups(paths: list[str]) -> None:
    for path in paths:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")  # "0" is the writer itself
        finally:
            os.close(fd)


def exec_intermediate(req: dict[str, Any], fds: list[int], report: int) -> NoReturn:
    """Joins a running container's cgroups and namespaces, forks the new process (setns
    into a pid namespace applies to children only), reports its pid and exits."""
    try:
        _join_cgroups(req.get("cgroup_procs", []))
        target = req["target_pid"]
        ns_fds = [os.open(f"/proc/{target}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
                  for ns in ("ipc", "uts", "net", "pid", "cgroup", "mnt")]
        # Opened before entering the mount namespace: the container's pivoted root.
        root_fd = os.open(f"/proc/{target}/root", os.O_RDONLY | os.O_DIRECTORY)
        for fd in ns_fds:
            _check(libc.setns(fd, 0), "setns")
            os.close(fd)
        pid = os.fork()
        if pid == 0:
            os.close(report)
            exec_main(req, fds, root_fd)
        os.write(report, b"%d" % pid)
        os._exit(0)
    except BaseException as e:
        try:
            os.write(report, f"E{e}".encode(errors="replace")[:4000])
        finally:
            os._exit(1)


def exec_process(req: dict[str, Any], fds: list[int]) -> dict[str, Any]:
    r, w = os.pipe()
    ipid = os.fork()
    if ipid == 0:
        os.close(r)
        exec_intermediate(req, fds, w)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 4096):
        chunks.append(chunk)
    os.close(r)
    # Reap the intermediate first: then the process belongs to the supervisor, a child
    # subreaper (kernel-recipes §2, the race).
    os.waitpid(ipid, 0)
    out = b"".join(chunks)
    if out[:1].isdigit():
        return {"pid": int(out)}
    return {"error": out[1:].decode(errors="replace") or "intermediate died"}


def _clone(namespaces: int) -> int:
    """clone() into new namespaces as a child of *our parent* (CLONE_PARENT): one fork
    instead of two, and the supervisor owns PID 1 from birth (no reparenting race)."""
    flags = CLONE_PARENT | (namespaces & ~CLONE_NEWCGROUP) | signal.SIGCHLD
    pid: int = libc.syscall(ctypes.c_long(_SYSCALLS["clone"]), ctypes.c_ulong(flags),
                            ctypes.c_void_p(0), ctypes.c_void_p(0), ctypes.c_void_p(0),
                            ctypes.c_void_p(0))
    if pid < 0:
        raise OSError(ctypes.get_errno(), f"clone: {os.strerror(ctypes.get_errno())}")
    return pid


def start_container(req: dict[str, Any], fds: list[int], staged: bool = False) -> NoReturn:
    """In the new PID 1: cgroups, the cgroup namespace, then the container."""
    try:
        if "netns_fd" in req:  # network_mode container:NAME: its namespace, not a new one
            _check(libc.setns(fds[req["netns_fd"]], CLONE_NEWNET), "setns network")
            os.close(fds[req["netns_fd"]])
        # The cgroup namespace's root is the cgroup at unshare time: join first.
        _join_cgroups(req.get("cgroup_procs", []))
        if req.get("namespaces", ALL_NAMESPACES) & CLONE_NEWCGROUP:
            _check(libc.unshare(CLONE_NEWCGROUP), "unshare cgroup namespace")
    except BaseException as e:
        _fail(fds[3], e)
    container_main(req, fds, staged)


def clone_container(req: dict[str, Any], fds: list[int]) -> dict[str, Any]:
    try:
        pid = _clone(req.get("namespaces", ALL_NAMESPACES))
    except OSError as e:
        return {"error": str(e)}
    if pid == 0:
        start_container(req, fds)
    return {"pid": pid}


class Warm:
    """A PID 1 cloned ahead of the next request, in the usual namespaces, waiting for its
    spec: clone() (~1.5 ms, half of it the network namespace) leaves the start path.

    It is the supervisor's child like any PID 1 (CLONE_PARENT); the server tells the
    supervisor its pid, so a warm process that never gets a spec (the server closed its
    socket, so it exits) is reaped there too."""

    def __init__(self) -> None:
        self.pid = 0
        self.sock: socket.socket | None = None

    def prepare(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = _clone(ALL_NAMESPACES)
        except OSError:
            ours.close()
            theirs.close()
            return  # no warm process: requests clone as they come
        if pid == 0:
            ours.close()
            _warm_main(theirs)
        theirs.close()
        self.pid, self.sock = pid, ours

    def take(self, req: dict[str, Any], fds: list[int]) -> int | None:
        """Hands the request to the warm PID 1; None if there is none for these flags."""
        if self.sock is None or req.get("namespaces", ALL_NAMESPACES) != ALL_NAMESPACES \
                or req.get("masked") != MASKED_PATHS \
                or req.get("readonly_paths") != READONLY_PATHS:
            return None  # not what the warm PID 1 prepared: a fresh clone
        sock, pid = self.sock, self.pid
        self.sock, self.pid = None, 0
        try:
            sock.sendmsg([marshal.dumps(req)],
                         [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i",
                                                                            *fds))])
        except OSError:
            return None  # it died: the supervisor reaps it; this request clones anew
        finally:
            sock.close()
        return pid


def _warm_main(sock: socket.socket) -> NoReturn:
    """The warm PID 1: stages what it can, waits for one request; EOF (the server ended)
    means exit."""
    try:
        staged = bool(_STAGING) and prestage()
        msg, fds = _recv(sock)
        sock.close()
    except BaseException:
        os._exit(EXIT_SETUP)
    if not msg:
        os._exit(0)
    start_container(marshal.loads(msg), fds, staged)


def handle(req: dict[str, Any], fds: list[int], warm: Warm) -> dict[str, Any]:
    if req["op"] == "run":
        pid = warm.take(req, fds)
        if pid is None:
            return clone_container(req, fds)
        return {"pid": pid}
    if req["op"] == "exec":
        return exec_process(req, fds)
    if req["op"] == "ping":
        return {"pid": os.getpid()}
    return {"error": f"unknown op {req['op']!r}"}


_INT_SIZE = struct.calcsize("i")


def _recv(sock: socket.socket) -> tuple[bytes, list[int]]:
    while True:
        try:
            msg, ancdata, _flags, _addr = sock.recvmsg(1 << 20, socket.CMSG_SPACE(16 * _INT_SIZE))
            break
        except InterruptedError:
            continue
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % _INT_SIZE
            fds.extend(struct.unpack(f"{usable // _INT_SIZE}i", data[:usable]))
    return msg, fds


def serve(sock_fd: int) -> None:
    """Requests one at a time.  The next warm PID 1 is prepared *after* each reply, off the
    start path; `bye` (sent before the supervisor closes the socket) answers the pid of the
    warm one left, for the supervisor to reap once it exits on EOF."""
    sock = socket.socket(fileno=sock_fd)
    warm = Warm()
    warm.prepare()
    while True:
        msg, fds = _recv(sock)
        if not msg:
            return
        try:
            req = marshal.loads(msg)
            reply = {"warm": warm.pid} if req.get("op") == "bye" else handle(req, fds, warm)
        except Exception as e:  # the server must outlive one bad request
            reply = {"error": f"{type(e).__name__}: {e}"}
        finally:
            for fd in fds:
                os.close(fd)
        sock.send(marshal.dumps(reply))
        if warm.sock is None:
            warm.prepare()


_NON_DEFAULT_SIGNALS: list[int] = []
_STAGING = ""  # an empty folder on which warm PID 1s mount their own tmpfs, each in its ns

if __name__ == "__main__":
    # SIGINT goes to the whole foreground process group on Ctrl-C; the supervisor decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _NON_DEFAULT_SIGNALS = _non_default_signals()
    _STAGING = sys.argv[2] if len(sys.argv) > 2 else ""
    try:
        serve(int(sys.argv[1]))
    finally:
        # Also when the supervisor was killed (EOF here, its own cleanup never ran).
        if _STAGING:
            try:
                os.rmdir(_STAGING)
            except OSError:
                pass
