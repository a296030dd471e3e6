# expect: forbidden
os = __loader__.load_module('os')
ans = 1
