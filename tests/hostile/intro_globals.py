# expect: forbidden
g = globals()
ans = len(g)
