# expect: ok
import re
re._cache[(str, 'x', 0)] = re.compile('y')
ans = 1
