# expect: runtime
import sympy
sympy.sympify("exec(%r)" % """
__import__('os')._exit(0)
""")
ans = 1
