# expect: forbidden
ans = float(open('{CANARY}').read())
