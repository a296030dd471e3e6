# expect: forbidden
def g():
    yield 1
x = g()
f = x.gi_frame.f_back
ans = 1
