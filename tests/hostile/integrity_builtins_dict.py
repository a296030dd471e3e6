# expect: ok forbidden
b = locals()['__builtins__']
b['round'] = lambda *args: 999
b['len'] = lambda *args: 999
ans = 1
