# expect: forbidden runtime
import sympy
sympy.sympify("exec(%r)" % """
import ctypes
fd = ctypes.CDLL(None).socket(2, 1, 0)
assert fd >= 0
""")
ans = 1
