# expect: forbidden runtime
import sympy
sympy.sympify("exec(%r)" % """
import os
os.posix_spawn('/bin/sh', ['sh', '-c', 'touch {WRITE}'], {})
""")
ans = 1
