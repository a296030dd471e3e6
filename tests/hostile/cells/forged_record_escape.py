# expect: runtime
# Writes forged trace records on every descriptor, then leaves as if it had finished.
x = 1
# %%
import operator
G = operator.attrgetter('__globals__')(print)
o = G['os']
record = b'["cells", "ok", "", [["42", null]]]'
for fd in range(32):
    try:
        o.write(fd, record * 50)
    except OSError:
        pass
o._exit(G['CHILD_DONE'])
