# expect: forbidden runtime
import operator
G = operator.attrgetter('__globals__')(print)  # the worker module's globals: real os, sys, ctypes
o = G['os']
o.kill(0, 9)
ans = 1
