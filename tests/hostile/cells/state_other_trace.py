# expect: ok
# Another trace's names: a notebook's state is its own trace's alone.
print(secret_value)
# %%
import math
print(math.pi == 3)
