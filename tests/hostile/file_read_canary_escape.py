# expect: forbidden runtime
import sympy
sympy.sympify("exec(%r)" % """
data = open('{CANARY}').read()
assert data
""")
ans = 1
