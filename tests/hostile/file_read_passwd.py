# expect: forbidden
ans = len(open('/etc/passwd').read())
