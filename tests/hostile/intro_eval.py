# expect: forbidden
ans = eval('1 + 1')
