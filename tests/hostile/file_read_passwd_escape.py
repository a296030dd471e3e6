# expect: forbidden runtime
import sympy
sympy.sympify("exec(%r)" % """
assert open('/etc/passwd').read()
""")
ans = 1
