# expect: ok
import re
cache = re._cache  # an alias: no attribute store for a static rule to see
cache[(str, 'x', 0)] = re.compile('y')
ans = 1
