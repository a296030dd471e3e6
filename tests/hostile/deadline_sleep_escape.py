# expect: timeout
import operator
G = operator.attrgetter('__globals__')(print)  # the worker module's globals: real os, sys, ctypes
G['time'].sleep(30)
ans = 1
