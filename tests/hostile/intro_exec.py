# expect: forbidden
exec('ans = 2')
