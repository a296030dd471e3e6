# expect: ok
import operator
G = operator.attrgetter('__globals__')(print)  # the worker module's globals: real os, sys, ctypes
class Fake:
    def sqrt(self, x):
        return 999
modules = G['sys'].modules
modules['math'] = Fake()
modules['decimal'] = Fake()
ans = 1
