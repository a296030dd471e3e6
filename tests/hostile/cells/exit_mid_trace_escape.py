# expect: runtime
x = 1
# %%
import sympy
sympy.sympify("exec(%r)" % "__import__('os')._exit(0)")
# %%
print(x)
