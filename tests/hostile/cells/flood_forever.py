# expect: timeout
x = 1
# %%
while True:
    print('x' * 100000)
