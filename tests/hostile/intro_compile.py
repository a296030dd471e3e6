# expect: forbidden
c = compile('1', 'x', 'eval')
ans = 1
