# expect: forbidden runtime
import sympy
sympy.sympify("exec(%r)" % """
import os
made = 0
for _ in range(30):
    try:
        pid = os.fork()
    except OSError:
        continue
    if pid == 0:
        os._exit(0)
    made += 1
assert made
""")
ans = 1
