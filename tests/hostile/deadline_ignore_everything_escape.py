# expect: timeout
import operator
G = operator.attrgetter('__globals__')(print)  # the worker module's globals: real os, sys, ctypes
s = G['signal']
for sig in (s.SIGALRM, s.SIGTERM, s.SIGINT, s.SIGXCPU, s.SIGVTALRM):
    try:
        s.signal(sig, s.SIG_IGN)
    except (OSError, ValueError):
        pass
G['time'].sleep(30)
