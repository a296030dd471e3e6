# expect: runtime
def f(n):
    return f(n + 1)
ans = f(0)
