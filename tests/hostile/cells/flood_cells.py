# expect: ok
# Many cells, each printing megabytes, and a huge displayed value: outputs are cut to CELL_CHARS.
for i in range(2000):
    print('a' * 1000)
# %%
for i in range(2000):
    print('b' * 1000)
# %%
'c' * 10_000_000
# %%
print('d' * 5_000_000, end='')
print('tail')
