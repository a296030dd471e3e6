# expect: memory
import numpy as np
ans = float(np.zeros(10 ** 11).sum())
