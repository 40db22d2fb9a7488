"""Lock the current process down before any untrusted code runs in it (Linux only).

Called first thing in every sandboxed interpreter (`tuner_eval.sandbox.launcher`), in this order:

1. namespaces: a new network namespace (no interfaces up: no route anywhere, not even to the
   host's localhost), plus mount, IPC and UTS namespaces. As root these are created directly;
   otherwise inside a new user namespace that maps only the caller's own uid.
2. a size-capped tmpfs mounted over the working directory (nodev, nosuid, noexec), private to the
   mount namespace: the program's files vanish with it and cannot fill the disk.
3. every capability dropped (effective, permitted, inheritable and the bounding set).
4. rlimits: CPU seconds, address space, file size, open files, processes, no core files.
5. no_new_privs, then Landlock: read-only access to the interpreter's files and the system
   libraries, read-write access to the working directory only, no execution of any file, no TCP
   bind/connect, and (ABI 6) no signals to, and no abstract-socket connections with, processes
   outside the sandbox. /proc, the harness's files and data sets are not readable.
6. seccomp (x86_64): no execve/execveat, fork/vfork, clone without CLONE_THREAD (threads are
   fine), sockets other than AF_UNIX, ptrace/process_vm_*, mount/unshare/setns/chroot/
   pivot_root, kill/tgkill aimed at any other process, io_uring, bpf, perf_event_open,
   userfaultfd, keyrings, kernel modules, reboot, mknod.

Each layer reports whether it is in force; `lock_down` returns that report and never raises for
a layer the kernel lacks (the caller decides whether a missing layer is acceptable).

Self-contained (standard library + ctypes) and free of `from __future__` imports: this file is
sent as source into the sandboxed interpreter.
"""

import ctypes
import errno
import os
import resource
import struct

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_THREAD = 0x00010000

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 4096, 16384, 1 << 18

PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_SET_SECCOMP = 22
PR_SET_DUMPABLE = 4
SECCOMP_MODE_FILTER = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

_MACHINE = os.uname().machine
# Syscall numbers that differ by architecture. Landlock's are the same everywhere.
_SYS = {
    "x86_64": {"capset": 126},
    "aarch64": {"capset": 91},
}
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446


def _err(what):
    code = ctypes.get_errno()
    return what + ": " + errno.errorcode.get(code, str(code))


# -- 1-2. namespaces and the private working directory -------------------------------------

def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def enter_network_namespace():
    """A new, empty network namespace (inside a new user namespace when not root).

    Returns (ok, note). The program launcher (zygote) enters one once; the programs it forks
    inherit it and only add their own mount, IPC and UTS namespaces.
    """
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNET | (CLONE_NEWUSER if os.geteuid() != 0 else 0)
    if _libc.unshare(flags) != 0:
        return False, _err("unshare(CLONE_NEWNET)")
    if flags & CLONE_NEWUSER:
        _map_own_ids(uid, gid)
    return True, ""


def _map_own_ids(uid, gid):
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", "%d %d 1" % (uid, uid))
    _write("/proc/self/gid_map", "%d %d 1" % (gid, gid))


def enter_namespaces(workdir, tmpfs_size, inherited_network=None):
    """New net/mount/IPC/UTS namespaces and a tmpfs on `workdir`. Returns (net_ok, tmpfs_ok, note).

    With `inherited_network` (True/False: whether the parent's network namespace is a private
    one) no network namespace is created here.
    """
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS
    if inherited_network is None:
        flags |= CLONE_NEWNET
        if os.geteuid() != 0:
            flags |= CLONE_NEWUSER
    net = bool(inherited_network) if inherited_network is not None else True
    if _libc.unshare(flags) != 0:
        note = _err("unshare")
        if inherited_network is not None:
            return net, False, note
        # Without a user namespace for the mount, try the network alone (needs CAP_SYS_ADMIN).
        if _libc.unshare(CLONE_NEWNET) != 0:
            return False, False, note + "; " + _err("unshare(CLONE_NEWNET)")
        return True, False, note
    if flags & CLONE_NEWUSER:
        _map_own_ids(uid, gid)
    if _libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return net, False, _err("mount --make-rprivate /")
    options = ("size=%s,mode=0700,uid=%d,gid=%d" % (tmpfs_size, uid, gid)).encode()
    if _libc.mount(b"tmpfs", workdir.encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options) != 0:
        return net, False, _err("mount tmpfs")
    return net, True, ""


def hide_paths(paths):
    """Cover each path with an empty read-only tmpfs (folders) or /dev/null (files), in this
    process's private mount namespace. Returns False if any mount failed."""
    for path in paths:
        if os.path.isdir(path):
            ok = _libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                             b"size=4k,mode=0555") == 0
        else:
            ok = _libc.mount(b"/dev/null", path.encode(), None, MS_BIND, None) == 0
        if not ok:
            return False
    return True


# -- 3. capabilities ---------------------------------------------------------------------------

def drop_capabilities():
    """Empty the bounding set and the effective/permitted/inheritable sets."""
    for cap in range(64):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the last cap is fine
    nr = _SYS.get(_MACHINE, {}).get("capset")
    if nr is None:
        return False
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = ctypes.create_string_buffer(24)  # two zeroed __user_cap_data_struct
    ok = _libc.syscall(nr, ctypes.c_char_p(header), data) == 0
    status = open("/proc/self/status").read() if ok else ""
    return ok and "CapEff:\t0000000000000000" in status


# -- 4. resource limits ------------------------------------------------------------------------

def set_limits(limits):
    """limits: {"cpu_s", "memory_bytes", "file_bytes", "open_files", "processes"}."""
    def both(kind, value):
        resource.setrlimit(kind, (value, value))

    cpu = int(limits["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    both(resource.RLIMIT_AS, int(limits["memory_bytes"]))
    both(resource.RLIMIT_FSIZE, int(limits["file_bytes"]))
    both(resource.RLIMIT_NOFILE, int(limits["open_files"]))
    both(resource.RLIMIT_CORE, 0)
    if os.getuid() != 0:  # the kernel never applies RLIMIT_NPROC to uid 0; seccomp covers it
        both(resource.RLIMIT_NPROC, int(limits["processes"]))


# -- 5. Landlock -------------------------------------------------------------------------------

LL_EXECUTE, LL_WRITE_FILE, LL_READ_FILE, LL_READ_DIR = 1, 2, 4, 8
LL_REMOVE_DIR, LL_REMOVE_FILE, LL_MAKE_CHAR, LL_MAKE_DIR = 16, 32, 64, 128
LL_MAKE_REG, LL_MAKE_SOCK, LL_MAKE_FIFO, LL_MAKE_BLOCK, LL_MAKE_SYM = 256, 512, 1024, 2048, 4096
LL_REFER, LL_TRUNCATE, LL_IOCTL_DEV = 8192, 16384, 32768
LL_NET_BIND_TCP, LL_NET_CONNECT_TCP = 1, 2
LL_SCOPE_ABSTRACT_UNIX_SOCKET, LL_SCOPE_SIGNAL = 1, 2


def landlock_abi():
    abi = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return abi if abi > 0 else 0


def apply_landlock(read_paths, write_paths, device_paths, list_paths=()):
    """Allow reading `read_paths`, read-write under `write_paths`, read/write of the device files,
    and only listing (no file contents) under `list_paths`; deny everything else, including
    execution, TCP, and signals out of the sandbox."""
    abi = landlock_abi()
    if abi < 1:
        return 0, "Landlock unavailable"
    handled = (1 << 13) - 1
    if abi >= 2:
        handled |= LL_REFER
    if abi >= 3:
        handled |= LL_TRUNCATE
    if abi >= 5:
        handled |= LL_IOCTL_DEV
    fields = [handled]
    if abi >= 4:
        fields.append(LL_NET_BIND_TCP | LL_NET_CONNECT_TCP)
    if abi >= 6:
        fields.append(LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL)
    attr = struct.pack("%dQ" % len(fields), *fields)
    ruleset = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.c_char_p(attr),
                            ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        return 0, _err("landlock_create_ruleset")
    file_read = LL_READ_FILE
    dir_read = LL_READ_FILE | LL_READ_DIR
    dir_write = (dir_read | LL_WRITE_FILE | LL_REMOVE_DIR | LL_REMOVE_FILE | LL_MAKE_DIR | LL_MAKE_REG
                 | LL_MAKE_SYM | LL_MAKE_FIFO | LL_MAKE_SOCK) | (handled & (LL_REFER | LL_TRUNCATE))
    device = LL_READ_FILE | LL_WRITE_FILE | (handled & LL_TRUNCATE)

    def allow(path, access):
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return
        try:
            if not os.path.isdir(path):
                access &= LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | LL_TRUNCATE | LL_IOCTL_DEV
            rule = struct.pack("=Qi", access & handled, fd)
            if _libc.syscall(SYS_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(1),
                             ctypes.c_char_p(rule), ctypes.c_uint32(0)) != 0:
                raise OSError(_err("landlock_add_rule " + path))
        finally:
            os.close(fd)

    try:
        for path in list_paths:
            allow(path, LL_READ_DIR)
        for path in read_paths:
            allow(path, dir_read if os.path.isdir(path) else file_read)
        for path in write_paths:
            allow(path, dir_write)
        for path in device_paths:
            allow(path, device)
        if _libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            return 0, _err("landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi, ""


# -- 6. seccomp --------------------------------------------------------------------------------

_AUDIT_ARCH_X86_64 = 0xC000003E
# x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl).
_X86_64_DENY = {
    "execve": 59, "execveat": 322, "fork": 57, "vfork": 58, "ptrace": 101,
    "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_open": 434, "pidfd_send_signal": 424,
    "pidfd_getfd": 438, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
    "unshare": 272, "setns": 308, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
    "keyctl": 250, "add_key": 248, "request_key": 249, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
    "finit_module": 313, "delete_module": 176, "reboot": 169, "swapon": 167, "swapoff": 168,
    "acct": 163, "mknod": 133, "mknodat": 259, "open_by_handle_at": 304, "name_to_handle_at": 303,
    "fanotify_init": 300, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "mount_setattr": 442, "iopl": 172, "ioperm": 173, "syslog": 103,
    "quotactl": 179, "vhangup": 153, "settimeofday": 164, "clock_settime": 227, "uselib": 134,
}
_X86_64 = {"clone": 56, "clone3": 435, "socket": 41, "socketpair": 53, "kill": 62, "tkill": 200,
           "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297}

_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW, _RET_KILL_PROCESS = 0x7FFF0000, 0x80000000
_ARG0_LO, _ARG0_HI = 16, 20


def _ret_errno(code):
    return 0x00050000 | code


def _seccomp_program(own_pid):
    ins = []

    def op(code, k, jt=0, jf=0):
        ins.append(struct.pack("HBBI", code, jt, jf, k))

    op(_LD_W_ABS, 4)                                   # arch
    op(_JEQ_K, _AUDIT_ARCH_X86_64, 1, 0)
    op(_RET_K, _RET_KILL_PROCESS)
    op(_LD_W_ABS, 0)                                   # syscall number
    op(_JGE_K, 0x40000000, 0, 1)                       # the x32 ABI: refuse outright
    op(_RET_K, _RET_KILL_PROCESS)
    for nr in sorted(_X86_64_DENY.values()):
        op(_JEQ_K, nr, 0, 1)
        op(_RET_K, _ret_errno(errno.EPERM))
    # clone3 hides its flags in memory: ENOSYS makes glibc fall back to clone for threads.
    op(_JEQ_K, _X86_64["clone3"], 0, 1)
    op(_RET_K, _ret_errno(errno.ENOSYS))
    # clone: threads only.
    op(_JEQ_K, _X86_64["clone"], 0, 4)
    op(_LD_W_ABS, _ARG0_LO)
    op(_JSET_K, CLONE_THREAD, 0, 1)
    op(_RET_K, _RET_ALLOW)
    op(_RET_K, _ret_errno(errno.EPERM))
    # socket/socketpair: AF_UNIX only.
    for name in ("socket", "socketpair"):
        op(_LD_W_ABS, 0)
        op(_JEQ_K, _X86_64[name], 0, 4)
        op(_LD_W_ABS, _ARG0_LO)
        op(_JEQ_K, 1, 0, 1)                            # AF_UNIX
        op(_RET_K, _RET_ALLOW)
        op(_RET_K, _ret_errno(errno.EACCES))
    # Signals: only to this process itself.
    for name in ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
        op(_LD_W_ABS, 0)
        op(_JEQ_K, _X86_64[name], 0, 6)
        op(_LD_W_ABS, _ARG0_HI)
        op(_JEQ_K, 0, 0, 3)
        op(_LD_W_ABS, _ARG0_LO)
        op(_JEQ_K, own_pid, 0, 1)
        op(_RET_K, _RET_ALLOW)
        op(_RET_K, _ret_errno(errno.EPERM))
    op(_RET_K, _RET_ALLOW)
    return b"".join(ins), len(ins)


def apply_seccomp():
    if _MACHINE != "x86_64":
        return False, "seccomp filter written for x86_64 only; this is " + _MACHINE
    code, count = _seccomp_program(os.getpid())
    program = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HxxxxxxQ", count, ctypes.addressof(program))
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.c_char_p(fprog), 0, 0) != 0:
        return False, _err("prctl(PR_SET_SECCOMP)")
    return True, ""


# -- all of it ---------------------------------------------------------------------------------

def lock_down(config):
    """Apply every layer; returns {"layer": True/False or detail, "notes": [...]}.

    config: workdir, tmpfs_size, limits, read_paths, write_paths (besides workdir), device_paths,
    list_paths, hidden_paths and broad_read_paths (see `hide_paths`), inherited_network (set by
    the zygote launcher).
    """
    report = {"notes": []}
    workdir = config["workdir"]
    net, tmpfs, note = enter_namespaces(workdir, config.get("tmpfs_size", "64m"), config.get("inherited_network"))
    report["network_namespace"], report["private_tmpfs"] = net, tmpfs
    if note:
        report["notes"].append(note)
    read_paths, list_paths = config["read_paths"], config.get("list_paths", [])
    if tmpfs and hide_paths(config.get("hidden_paths", [])):
        # The excluded packages are covered by empty mounts in this private mount namespace, so
        # whole folders can be granted: a few rules instead of one per site-packages entry.
        read_paths, list_paths = config.get("broad_read_paths", read_paths), []
    os.chdir(workdir)
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    report["capabilities_dropped"] = drop_capabilities()
    set_limits(config["limits"])
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        report["notes"].append(_err("PR_SET_NO_NEW_PRIVS"))
    abi, note = apply_landlock(read_paths, [workdir] + list(config.get("write_paths", [])),
                               config.get("device_paths", []), list_paths)
    report["landlock_abi"] = abi
    if note:
        report["notes"].append(note)
    ok, note = apply_seccomp()
    report["seccomp"] = ok
    if note:
        report["notes"].append(note)
    return report
