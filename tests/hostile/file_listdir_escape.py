# expect: forbidden runtime
import sympy
sympy.sympify("exec(%r)" % """
import os
assert os.listdir('/') or os.listdir('/tmp')
""")
ans = 1
