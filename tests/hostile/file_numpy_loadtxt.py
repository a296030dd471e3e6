# expect: runtime forbidden
import numpy as np
ans = float(np.loadtxt('{CANARY}'))
