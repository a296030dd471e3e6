# expect: runtime forbidden
import numpy as np
np.save('{WRITE}', np.zeros(3))
ans = 1
