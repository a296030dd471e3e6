# expect: memory
x = bytearray(10 ** 11)
ans = 1
