# expect: forbidden
import numpy as np
ans = np.ctypeslib.ctypes.CDLL(None).getpid()
