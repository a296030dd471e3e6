# expect: runtime
import sympy
sympy.sympify("exec(%r)" % """
import ctypes
ctypes.string_at(0)
""")
ans = 1
