# expect: timeout
import sympy
sympy.sympify("exec(%r)" % """
import signal
signal.signal(signal.SIGALRM, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
""")
while True:
    pass
