# expect: forbidden
# A forbidden operation ends the trace (the verdict is FORBIDDEN, not an output the writer could
# have recorded).
x = 1
print(x)
# %%
open('/etc/passwd').read()
# %%
print(x + 1)
