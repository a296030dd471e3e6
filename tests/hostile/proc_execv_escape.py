# expect: forbidden runtime
import sympy
sympy.sympify("exec(%r)" % """
import os
os.execv('/bin/sh', ['sh', '-c', 'touch {WRITE}'])
""")
ans = 1
