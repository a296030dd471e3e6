# expect: memory
x = [0] * (10 ** 10)
ans = 1
