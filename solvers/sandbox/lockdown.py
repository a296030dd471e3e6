"""OS-level confinement of a sandbox worker: namespaces, chroot, privilege drop, rlimits, seccomp.

These are the real wall; the Python-level policy in `policy.py` is only a first filter. Every
function here is best effort and reports what it achieved, so that the pool can tell the caller
which layers are active (`Executor.isolation`).

Two seccomp filters. On x86_64 the zygote's is an allow list (anything not listed fails with EPERM):
what programs need plus what the zygote itself needs to fork and watch its children. Each
program's child inherits it and stacks a small filter of its own that takes the zygote's extra
powers away again (installing a filter costs the kernel a compile, so the large one is compiled
once per zygote). On other architectures the zygote's filter is a deny list and the child adds
its own denials.
"""
from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000
CLONE_THREAD = 0x00010000
PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4
PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000

# Syscall numbers per architecture (audit arch id, table). Only calls the filters name are listed.
_X86_64 = dict(
    execve=59, execveat=322, fork=57, vfork=58, clone=56, clone3=435,
    socket=41, socketpair=53, connect=42, bind=49, listen=50, accept=43, accept4=288,
    ptrace=101, process_vm_readv=310, process_vm_writev=311,
    kill=62, tkill=200, tgkill=234, rt_sigqueueinfo=129, rt_tgsigqueueinfo=297,
    pidfd_open=434, pidfd_send_signal=424, pidfd_getfd=438,
    mount=165, umount2=166, pivot_root=155, chroot=161, unshare=272, setns=308,
    keyctl=250, add_key=248, request_key=249, bpf=321, perf_event_open=298, userfaultfd=323,
    open_by_handle_at=304, name_to_handle_at=303, init_module=175, finit_module=313,
    delete_module=176, kexec_load=246, kexec_file_load=320, reboot=169, swapon=167, swapoff=168,
    personality=135, io_uring_setup=425, io_uring_enter=426, io_uring_register=427,
    setrlimit=160, prlimit64=302, setsid=112, setpgid=109,
    shmget=29, shmat=30, shmctl=31, shmdt=67, msgget=68, msgsnd=69, msgrcv=70, msgctl=71, semget=64,
    semop=65, semctl=66, semtimedop=220, mq_open=240, mq_unlink=241, mq_timedsend=242,
    mq_timedreceive=243, mq_notify=244, mq_getsetattr=245, memfd_create=319,
)
_AARCH64 = dict(
    execve=221, execveat=281, clone=220, clone3=435,
    socket=198, socketpair=199, bind=200, listen=201, accept=202, connect=203, accept4=242,
    ptrace=117, process_vm_readv=270, process_vm_writev=271,
    kill=129, tkill=130, tgkill=131, rt_sigqueueinfo=138, rt_tgsigqueueinfo=240,
    pidfd_open=434, pidfd_send_signal=424, pidfd_getfd=438,
    mount=40, umount2=39, pivot_root=41, chroot=51, unshare=97, setns=268,
    keyctl=219, add_key=217, request_key=218, bpf=280, perf_event_open=241, userfaultfd=282,
    open_by_handle_at=265, name_to_handle_at=264, init_module=105, finit_module=273,
    delete_module=106, kexec_load=104, kexec_file_load=294, reboot=142, swapon=224, swapoff=225,
    personality=92, io_uring_setup=425, io_uring_enter=426, io_uring_register=427,
    setrlimit=164, prlimit64=261, setsid=157, setpgid=154,
    shmget=194, shmat=196, shmctl=195, shmdt=197, msgget=186, msgsnd=189, msgrcv=188, msgctl=187,
    semget=190, semop=193, semctl=191, semtimedop=192, mq_open=180, mq_unlink=181, mq_timedsend=182,
    mq_timedreceive=183, mq_notify=184, mq_getsetattr=185, memfd_create=279,
)
_MACHINE = os.uname().machine
_ARCHES = {"x86_64": (0xC000003E, _X86_64), "aarch64": (0xC00000B7, _AARCH64)}

# Denied in the zygote and (inherited) in every program child where there is no allow list: no
# exec, no network, no debugging or signalling of other processes, no namespace / mount /
# kernel-module games.
_DENY_ALWAYS = (
    "execve", "execveat", "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    "ptrace", "process_vm_readv", "process_vm_writev", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    "pidfd_send_signal", "pidfd_getfd", "mount", "umount2", "pivot_root", "chroot",
    "unshare", "setns", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
    "userfaultfd", "open_by_handle_at", "name_to_handle_at", "init_module", "finit_module",
    "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff",
    "personality", "io_uring_setup", "io_uring_enter", "io_uring_register",
)
# Denied in the child that runs programs (where there is no allow list): no process creation, no
# changing its limits, no leaving the process group, no System V / POSIX IPC objects (which would
# outlive the program in the zygote's IPC namespace).
_DENY_CHILD = ("fork", "vfork", "setrlimit", "prlimit64", "setsid", "setpgid", "pidfd_open",
               "shmget", "shmat", "shmctl", "shmdt", "msgget", "msgsnd", "msgrcv", "msgctl", "semget",
               "semop", "semtimedop", "semctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive",
               "mq_notify", "mq_getsetattr", "memfd_create")
# The allow list (x86_64): what CPython, numpy and sympy need to compute and to hand back a result
# on an already open pipe. No open/openat (nothing to open: every module is preloaded), no IPC, no
# process creation, no signals to others. It is the zygote's filter, so that a child inherits it
# with the fork instead of loading it (the kernel compiles every filter it is given: a few hundred
# microseconds for this one); the child's own small filter (`_bpf(child_pid)`) takes away what only
# the zygote needs (`_ZYGOTE_X86_64`) and allows `clone`, `kill`-family and `prlimit64` only with
# the argument checks in `_bpf`.
_ALLOW_X86_64 = dict(
    read=0, write=1, close=3, stat=4, fstat=5, lstat=6, poll=7, lseek=8, mmap=9, mprotect=10,
    munmap=11, brk=12, rt_sigaction=13, rt_sigprocmask=14, rt_sigreturn=15, ioctl=16, pread64=17,
    pwrite64=18, readv=19, writev=20, access=21, sched_yield=24, mremap=25, msync=26, mincore=27,
    madvise=28, dup=32, dup2=33, nanosleep=35, getitimer=36, alarm=37, setitimer=38, getpid=39,
    exit=60, uname=63, fcntl=72, getcwd=79, readlink=89, gettimeofday=96, getrlimit=97,
    getrusage=98, sysinfo=99, times=100, getuid=102, getgid=104, geteuid=107, getegid=108,
    getppid=110, getpgrp=111, sigaltstack=131, arch_prctl=158, gettid=186, time=201, futex=202,
    sched_getaffinity=204, getdents64=217, set_tid_address=218, clock_gettime=228, clock_getres=229,
    clock_nanosleep=230, exit_group=231, newfstatat=262, readlinkat=267, faccessat=269, pselect6=270,
    ppoll=271, set_robust_list=273, getrandom=318, membarrier=324, statx=332, rseq=334,
    close_range=436, faccessat2=439,
)
# What the zygote needs beyond the allow list: fork its children (clone), a result pipe and a pidfd
# for each, wait for them, kill them, set their limits and install their filter (in the child,
# before the program runs). `clone`, `kill`, `tkill`, `tgkill` and `prlimit64` come back in the
# child with argument checks; the others are denied there.
_ZYGOTE_X86_64 = dict(
    clone=56, kill=62, tkill=200, tgkill=234, prlimit64=302, setrlimit=160, pipe=22, pipe2=293,
    select=23, wait4=61, waitid=247, pidfd_open=434, prctl=157,
)
_CHECKED = ("clone", "kill", "tkill", "tgkill", "prlimit64")


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


_PID_PLACEHOLDER = 0xFFFFFFFF  # no real pid
_LD_W_ABS, _JEQ, _JSET, _JGE, _RET = 0x20, 0x15, 0x45, 0x35, 0x06
_OFF_NR, _OFF_ARCH, _OFF_ARG0 = 0, 4, 16  # struct seccomp_data; args are little-endian u64


def _bpf(child_pid: int | None) -> list[tuple[int, int, int, int]]:
    """A seccomp program: the zygote's (`child_pid` None) or the small one each program's child adds."""
    arch_id, table = _ARCHES[_MACHINE]
    deny = _RET, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM
    allow = _RET, 0, 0, SECCOMP_RET_ALLOW
    prog = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JEQ, 1, 0, arch_id),
        (_RET, 0, 0, SECCOMP_RET_KILL_PROCESS),
        (_LD_W_ABS, 0, 0, _OFF_NR),
    ]
    if arch_id == 0xC000003E:  # x32 ABI syscalls alias the x86_64 ones with bit 30 set
        prog += [(_JGE, 0, 1, 0x40000000), deny]
    # clone3 gets ENOSYS so that libc falls back to the inspectable clone.
    prog += [(_JEQ, 0, 1, table["clone3"]), (_RET, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS)]
    allow_list = arch_id == 0xC000003E
    if child_pid is None:
        if allow_list:
            for number in sorted({*_ALLOW_X86_64.values(), *_ZYGOTE_X86_64.values()}):
                prog += [(_JEQ, 0, 1, number), allow]
            return prog + [deny]
        for name in _DENY_ALWAYS:
            if name in table:
                prog += [(_JEQ, 0, 1, table[name]), deny]
        return prog + [allow]
    # The child: the zygote's filter stays in force; this one takes away the zygote's own powers.
    names = [n for n in _ZYGOTE_X86_64 if n not in _CHECKED] if allow_list else _DENY_CHILD
    for name in names:
        if name in table:
            prog += [(_JEQ, 0, 1, table[name]), deny]
    # Each rule below ends in allow or deny, so reloading the accumulator with an argument is safe.
    # clone is allowed only for threads (fork/vfork/posix_spawn all come without CLONE_THREAD).
    prog += [(_JEQ, 0, 4, table["clone"]), (_LD_W_ABS, 0, 0, _OFF_ARG0), (_JSET, 0, 1, CLONE_THREAD), allow, deny]
    for name in ("kill", "tkill", "tgkill"):  # signals only to itself (abort(), raise())
        prog += [(_JEQ, 0, 4, table[name]), (_LD_W_ABS, 0, 0, _OFF_ARG0), (_JEQ, 0, 1, child_pid), allow, deny]
    if allow_list:
        # prlimit64 only to read limits (new_limit, the third argument, NULL); setrlimit is denied.
        arg2 = _OFF_ARG0 + 16
        prog += [(_JEQ, 0, 6, table["prlimit64"]), (_LD_W_ABS, 0, 0, arg2), (_JEQ, 0, 3, 0),
                 (_LD_W_ABS, 0, 0, arg2 + 4), (_JEQ, 0, 1, 0), allow, deny]
    return prog + [allow]


class SeccompFilter:
    """A seccomp program built ahead of time (the child only patches in its pid and installs it)."""

    def __init__(self, child: bool) -> None:
        self.supported = _MACHINE in _ARCHES
        self.allow_list = _MACHINE == "x86_64"  # the zygote's filter is an allow list
        prog = _bpf(_PID_PLACEHOLDER if child else None) if self.supported else []
        self._array = (_SockFilter * len(prog))(*(_SockFilter(*ins) for ins in prog))
        self._pid_slots = [i for i, ins in enumerate(prog) if ins[0] == _JEQ and ins[3] == _PID_PLACEHOLDER]
        self._fprog = _SockFprog(len(prog), self._array)

    def install(self, pid: int | None = None) -> bool:
        """Install (stacking on earlier filters). Needs no-new-privs unless root."""
        if not self.supported:
            return False
        for i in self._pid_slots:
            self._array[i].k = pid
        return _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._fprog), 0, 0) == 0


def die_with_parent() -> bool:
    return _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0


def not_dumpable() -> bool:
    """Same-uid processes (the zygote's own children) may not ptrace it or open its /proc/PID/mem."""
    return _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0


def no_new_privs() -> bool:
    return _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0


def unshare_namespaces() -> bool:
    """Fresh, empty network and IPC namespaces (only a down loopback; no System V objects, the
    host's invisible). As non-root, via a user namespace."""
    if _libc.unshare(CLONE_NEWNET | CLONE_NEWIPC) == 0:
        return True
    if os.geteuid() == 0:
        return False
    uid, gid = os.geteuid(), os.getegid()
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWIPC) != 0:
        return False
    try:  # map ourselves so that file ownership still reads sensibly inside the namespace
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError:
        pass
    return True


def enter_empty_directory(prefix: str) -> None:
    """Make the working directory a fresh empty directory that no longer exists on the host: made,
    entered and removed at once, so nothing is left behind however the worker ends."""
    # Not `tempfile.mkdtemp`: tempfile imports shutil, bz2, lzma and zlib, whose six shared libraries
    # would be mapped in the zygote, and every mapping costs each fork and each exit.
    jail = os.path.join(os.environ.get("TMPDIR") or "/tmp", prefix + os.urandom(8).hex())
    os.mkdir(jail, 0o700)
    os.chdir(jail)
    os.rmdir(jail)


def chroot_and_drop(uid: int) -> bool:
    """As root: chroot into the (removed, empty) working directory, then become `uid` (no groups,
    no capabilities)."""
    os.chroot(".")
    os.chdir("/")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    return os.geteuid() == uid


def set_limit(which: int, value: int) -> bool:
    """Set soft = hard = `value` (lowering only, so that it also works unprivileged)."""
    try:
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))
        return True
    except (ValueError, OSError):
        return False


def close_fds_except(keep: set[int]) -> None:
    """Close every descriptor not in `keep` (a directory fd left open would defeat the chroot)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def address_space_bytes(statm_fd: int) -> int:
    """Current virtual size, read from an fd on /proc/self/statm opened before the chroot."""
    pages = int(os.pread(statm_fd, 64, 0).split()[0])
    return pages * os.sysconf("SC_PAGE_SIZE")
