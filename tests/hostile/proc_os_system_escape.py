# expect: forbidden runtime
import sympy
sympy.sympify("exec(%r)" % """
assert __import__('os').system('touch {WRITE}') == 0
""")
ans = 1
