# expect: timeout
ans = 10 ** 10 ** 10
