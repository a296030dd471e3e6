# expect: ok forbidden
# A fork loop past the Python layer (capped: never run an unbounded fork outside the sandbox); the
# child's seccomp filter and RLIMIT_NPROC 0 refuse every fork, and no process is left.
n = 30
# %%
import operator
G = operator.attrgetter('__globals__')(print)
o = G['os']
made = 0
for _ in range(n):
    try:
        pid = o.fork()
    except OSError:
        continue
    if pid == 0:
        G['time'].sleep(60)
        o._exit(0)
    made += 1
print('forks made:', made)
