# expect: forbidden runtime
import sympy
sympy.sympify("exec(%r)" % """
import socket
socket.create_connection(('127.0.0.1', {PORT}), timeout=1)
""")
ans = 1
