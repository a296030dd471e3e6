# expect: forbidden
o = __builtins__['open']
ans = 1
