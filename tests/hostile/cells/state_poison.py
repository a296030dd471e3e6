# expect: ok
# Changes that would reach the next trace if traces shared a process.
import math, decimal, random
math.pi = 3
decimal.getcontext().prec = 2
random.seed(0)
print(math.pi)
# %%
import operator
G = operator.attrgetter('__globals__')(print)  # the worker module's globals
G['_BUILTINS']['print'] = None
G['run_cells'] = None
print('poisoned')
