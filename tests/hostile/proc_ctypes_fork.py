# expect: forbidden runtime
import sympy
sympy.sympify("exec(%r)" % """
import ctypes
pid = ctypes.CDLL(None).fork()
if pid == 0:
    ctypes.CDLL(None)._exit(0)
assert pid > 0
""")
ans = 1
