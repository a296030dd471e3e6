# expect: forbidden
import math
vars(math)['pi'] = 3
ans = 1
