# expect: forbidden runtime
import sympy
sympy.sympify("exec(%r)" % """
open('{WRITE}', 'w').write('pwned')
""")
ans = 1
