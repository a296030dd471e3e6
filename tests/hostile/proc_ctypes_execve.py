# expect: forbidden runtime
import sympy
sympy.sympify("exec(%r)" % """
import ctypes
libc = ctypes.CDLL(None)
argv = (ctypes.c_char_p * 4)(b'sh', b'-c', b'touch {WRITE}', None)
assert libc.execve(b'/bin/sh', argv, None) == 0
""")
ans = 1
