# expect: forbidden
open('{WRITE}', 'w').write('pwned')
ans = 1
