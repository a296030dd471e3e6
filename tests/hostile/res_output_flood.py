# expect: timeout
while True:
    print('x' * 100000)
