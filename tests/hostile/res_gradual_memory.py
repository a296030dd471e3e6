# expect: memory timeout
# (on a loaded machine the 1 s limit may strike before the memory limit: either confines it)
chunks = []
while True:
    chunks.append(' ' * 10 ** 7)
