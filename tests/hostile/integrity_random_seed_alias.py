# expect: ok
import random
f = random.seed
f(0)
ans = 1
