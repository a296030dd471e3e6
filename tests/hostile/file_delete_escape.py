# expect: forbidden runtime
import sympy
sympy.sympify("exec(%r)" % """
__import__('os').remove('{VICTIM}')
""")
ans = 1
