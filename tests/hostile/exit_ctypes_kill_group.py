# expect: forbidden runtime
import sympy
sympy.sympify("exec(%r)" % """
import ctypes
assert ctypes.CDLL(None).kill(0, 9) == 0
""")
ans = 1
