# expect: ok
import math
self = math
self.sqrt = lambda x: 999
ans = 1
