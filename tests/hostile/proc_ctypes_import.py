# expect: forbidden
import ctypes
ans = ctypes.CDLL(None).getpid()
