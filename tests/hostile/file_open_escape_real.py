# expect: forbidden runtime
import operator
G = operator.attrgetter('__globals__')(print)  # the worker module's globals: real os, sys, ctypes
data = G['os'].open('{CANARY}', 0)
ans = 1
