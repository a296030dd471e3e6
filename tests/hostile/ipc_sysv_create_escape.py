# expect: forbidden runtime
import operator
G = operator.attrgetter('__globals__')(print)  # the worker module's globals: real os, sys, ctypes
# System V objects would outlive the program: three 256 MiB segments touched and detached, a
# message queue and a semaphore set, under keys the test looks for afterwards.
ct = operator.attrgetter('ctypes')(G['lockdown'])
libc = ct.CDLL(None, use_errno=True)
libc.shmat.restype = ct.c_void_p
made = []
for i in range(3):
    shm = libc.shmget({IPC_KEY} + i, 256 << 20, 0o1666)
    if shm >= 0:
        made.append(shm)
        at = libc.shmat(shm, None, 0)
        ct.memset(at, 1, 256 << 20)
        libc.shmdt(ct.c_void_p(at))
made += [x for x in (libc.msgget({IPC_KEY} + 10, 0o1666), libc.semget({IPC_KEY} + 11, 4, 0o1666)) if x >= 0]
if not made:
    raise PermissionError(ct.get_errno(), 'no System V object')
ans = 1
