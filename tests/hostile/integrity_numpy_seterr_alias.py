# expect: ok
import numpy as np
f = np.seterr
f(all='raise')
ans = 1
