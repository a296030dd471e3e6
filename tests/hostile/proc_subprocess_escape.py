# expect: forbidden runtime
import sympy
sympy.sympify("exec(%r)" % """
import subprocess
subprocess.run(['touch', '{WRITE}'])
""")
ans = 1
