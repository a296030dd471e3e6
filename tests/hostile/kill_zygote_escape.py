# expect: forbidden runtime
import operator
G = operator.attrgetter('__globals__')(print)  # the worker module's globals: real os, sys, ctypes
o = G['os']
o.kill(o.getppid(), 9)
ans = 1
