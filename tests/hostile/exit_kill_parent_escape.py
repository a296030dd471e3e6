# expect: forbidden runtime
import sympy
sympy.sympify("exec(%r)" % """
import os
os.kill(os.getppid(), 9)
""")
ans = 1
