# expect: runtime
import operator
G = operator.attrgetter('__globals__')(print)  # the worker module's globals: real os, sys, ctypes
o = G['os']
record = b'["ok", 999, "", null]'
for fd in range(32):  # every descriptor it might share with the zygote or the pool
    try:
        o.write(fd, record * 50)
    except OSError:
        pass
o._exit(G['CHILD_DONE'])
