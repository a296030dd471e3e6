# expect: forbidden runtime
import operator
G = operator.attrgetter('__globals__')(print)  # the worker module's globals: real os, sys, ctypes
o = G['os']
pid = o.fork()
if pid == 0:
    G['time'].sleep(60)
    o._exit(0)
ans = 1
