# expect: forbidden
def f():
    pass
ans = len(f.__globals__)
