"""Hold a process in ``fsync(2)``, as a disk slow to answer holds it: ``python -m tests.helpers.syscall_gate <pid>``
traces ``pid``'s main thread (``ptrace(2)``) and at its first ``fsync`` keeps it there, before the call runs, until
its own stdin is closed; then lets it go on. It prints ``attached`` once tracing, ``held`` once holding, ``exited``
if the process ended first (killed while held: its exit is taken here, for its parent to reap). Signals the process
receives meanwhile (a stop asked: SIGTERM) go on to it.

A process of its own, not a thread of the test: a stop ``ptrace`` reports goes to the tracer's whole process, where a
``Popen.poll()`` of the test would take it for an exit. Linux 5.3 or later (``PTRACE_GET_SYSCALL_INFO``), and the
right to trace the process (the same user, or root)."""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys

PTRACE_SYSCALL, PTRACE_DETACH = 24, 17
PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_GET_SYSCALL_INFO = 0x4206, 0x4207, 0x420E
#: syscall-stops report ``SIGTRAP | 0x80``
PTRACE_O_TRACESYSGOOD = 1
#: ``ptrace_syscall_info.op`` at a system call's entry
PTRACE_SYSCALL_INFO_ENTRY = 1
#: ``waitpid`` option: a traced thread too
WALL = 0x40000000
#: ``ptrace_syscall_info.arch`` (``AUDIT_ARCH_*``) -> the number of ``fsync`` there
FSYNC = {0xC000003E: 74, 0xC00000B7: 82}  # x86_64, aarch64

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]


def ptrace(request: int, pid: int, addr: int = 0, data: int = 0) -> int:
    result = int(libc.ptrace(request, pid, addr, data))
    if result == -1 and ctypes.get_errno():
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


def entering_fsync(pid: int) -> bool:
    """Whether ``pid``, in a syscall-stop, stopped as it enters ``fsync`` (``struct ptrace_syscall_info``: ``op`` its
    first byte, ``arch`` at 4, the entry's ``nr`` at 24)."""
    info = ctypes.create_string_buffer(128)
    ptrace(PTRACE_GET_SYSCALL_INFO, pid, ctypes.sizeof(info), ctypes.addressof(info))
    if info.raw[0] != PTRACE_SYSCALL_INFO_ENTRY:
        return False
    arch, nr = int.from_bytes(info.raw[4:8], sys.byteorder), int.from_bytes(info.raw[24:32], sys.byteorder)
    return nr == FSYNC[arch]  # KeyError: an architecture this helper does not know


def let_go(pid: int) -> int:
    """Once this process's stdin is closed, ``pid`` goes on; killed before (SIGKILL ends a held process), its exit is
    taken here, as its tracer's, so that its parent may reap it."""
    exits = os.pidfd_open(pid)
    ready, _, _ = select.select([sys.stdin, exits], [], [])
    if exits in ready:
        os.waitpid(pid, WALL)
        print("exited", flush=True)
        return 0
    sys.stdin.read()
    ptrace(PTRACE_DETACH, pid)
    return 0


def main(pid: int) -> int:
    ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACESYSGOOD)
    ptrace(PTRACE_INTERRUPT, pid)
    print("attached", flush=True)
    while True:
        _, status = os.waitpid(pid, WALL)
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            print("exited", flush=True)
            return 0
        stopped_by = os.WSTOPSIG(status)
        passed = 0  # a signal the process was about to receive (a stop asked: SIGTERM) goes on to it
        if stopped_by == signal.SIGTRAP | 0x80:
            if entering_fsync(pid):
                print("held", flush=True)
                return let_go(pid)
        elif status >> 16 == 0 and stopped_by != signal.SIGTRAP:
            passed = stopped_by
        ptrace(PTRACE_SYSCALL, pid, 0, passed)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
