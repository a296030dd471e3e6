# expect: forbidden
try:
    import os
except BaseException:
    pass
ans = 1
