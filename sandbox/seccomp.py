"""A small seccomp-BPF filter of our own, loaded by bubblewrap (``--seccomp FD``) as defence in depth.

The namespaces already cut the network and hide the host; the filter additionally refuses syscalls
an untrusted program never needs and that widen the kernel's attack surface or could let state leak
from one run into the next (ptrace, mount, keyrings, bpf, perf, new namespaces, POSIX message queues,
io_uring, sockets of any family but AF_UNIX). Refused calls fail with EPERM (EAFNOSUPPORT for sockets)
instead of killing the process, so programs see an ordinary error.

Only x86_64 numbers are known here; on other machines ``build_filter`` returns ``None`` and the sandbox
says seccomp is off (namespaces and rlimits still apply).
"""

from __future__ import annotations

import errno
import os
import platform
import struct

# BPF opcodes (linux/bpf_common.h)
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_AUDIT_ARCH_X86_64 = 0xC000003E
_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_X32_SYSCALL_BIT = 0x40000000

# offsets in struct seccomp_data
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARG0 = 16  # low 32 bits of args[0] (little endian)

# x86_64 syscall numbers refused outright
DENIED_X86_64: dict[str, int] = {
    "ptrace": 101,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "chroot": 161,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "sethostname": 170,
    "setdomainname": 171,
    "init_module": 175,
    "delete_module": 176,
    "finit_module": 313,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "acct": 163,
    "quotactl": 179,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "bpf": 321,
    "perf_event_open": 298,
    "userfaultfd": 323,
    "unshare": 272,
    "setns": 308,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "mq_open": 240,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
    "lookup_dcookie": 212,
    "vhangup": 153,
}
_SOCKET = 41
_CLONE = 56
_CLONE3 = 435
_AF_UNIX = 1
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME
_CLONE_NEW_MASK = (
    0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80
)
_ERRNO_MASK = 0xFFFF


def _stmt(code: int, k: int) -> tuple[int, int, int, int]:
    return (code, 0, 0, k)


def _jump(code: int, k: int, jt: int, jf: int) -> tuple[int, int, int, int]:
    return (code, jt, jf, k)


def build_filter(machine: str | None = None) -> bytes | None:
    """The filter as the raw ``struct sock_filter[]`` bytes bwrap reads, or ``None`` off x86_64."""
    if (machine or platform.machine()) not in ("x86_64", "amd64", "AMD64"):
        return None
    deny = _RET_ERRNO | (errno.EPERM & _ERRNO_MASK)
    # Layout (indices are fixed, so jump offsets are computed from them):
    #   0 ld arch; 1 jeq x86_64 ? skip : next; 2 kill; 3 ld nr; 4 jge x32-bit -> DENY
    #   5.. one jeq per denied nr -> DENY; then socket -> SOCK, clone -> CLONE, clone3 -> ENOSYS
    #   ALLOW; DENY; ENOSYS; then two blocks with their own returns (BPF jumps only go forward):
    #   SOCK: ld arg0, jeq AF_UNIX ? allow : EAFNOSUPPORT;  CLONE: ld arg0, jset NEW* ? deny : allow
    denied = sorted(DENIED_X86_64.values())
    prog: list[tuple[int, int, int, int]] = [
        _stmt(_LD_W_ABS, _OFF_ARCH),
        _jump(_JEQ_K, _AUDIT_ARCH_X86_64, 1, 0),
        _stmt(_RET_K, _RET_KILL_PROCESS),
        _stmt(_LD_W_ABS, _OFF_NR),
    ]
    n_checks = 1 + len(denied) + 3
    first_check = len(prog)
    allow_at = first_check + n_checks
    deny_at = allow_at + 1
    enosys_at = allow_at + 2
    sock_at = allow_at + 3
    clone_at = sock_at + 4

    def rel(target: int) -> int:
        off = target - (len(prog) + 1)
        if not 0 <= off < 256:
            raise ValueError("seccomp jump out of range")
        return off

    prog.append(_jump(_JGE_K, _X32_SYSCALL_BIT, rel(deny_at), 0))
    for nr in denied:
        prog.append(_jump(_JEQ_K, nr, rel(deny_at), 0))
    prog.append(_jump(_JEQ_K, _SOCKET, rel(sock_at), 0))
    prog.append(_jump(_JEQ_K, _CLONE, rel(clone_at), 0))
    # clone3 passes flags in a struct BPF cannot read: say ENOSYS so libc falls back to clone(2).
    prog.append(_jump(_JEQ_K, _CLONE3, rel(enosys_at), 0))
    assert len(prog) == allow_at
    prog.append(_stmt(_RET_K, _RET_ALLOW))
    prog.append(_stmt(_RET_K, deny))
    prog.append(_stmt(_RET_K, _RET_ERRNO | errno.ENOSYS))
    assert len(prog) == sock_at
    prog.append(_stmt(_LD_W_ABS, _OFF_ARG0))
    prog.append(_jump(_JEQ_K, _AF_UNIX, 0, 1))
    prog.append(_stmt(_RET_K, _RET_ALLOW))
    prog.append(_stmt(_RET_K, _RET_ERRNO | errno.EAFNOSUPPORT))
    assert len(prog) == clone_at
    prog.append(_stmt(_LD_W_ABS, _OFF_ARG0))
    prog.append(_jump(_JSET_K, _CLONE_NEW_MASK, 0, 1))
    prog.append(_stmt(_RET_K, deny))
    prog.append(_stmt(_RET_K, _RET_ALLOW))
    return b"".join(struct.pack("<HBBI", *ins) for ins in prog)


def filter_fd(program: bytes) -> int:
    """A sealed memfd holding ``program``, positioned at 0, for ``bwrap --seccomp FD``."""
    fd = os.memfd_create("referee-seccomp", os.MFD_CLOEXEC)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
