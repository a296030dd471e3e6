# expect: forbidden runtime
import sympy
sympy.sympify("exec(%r)" % """
import os
if os.fork() == 0:
    open('{WRITE}', 'w').write('child')
    os._exit(0)
""")
ans = 1
