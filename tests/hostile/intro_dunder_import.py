# expect: forbidden
os = __import__('os')
ans = 1
