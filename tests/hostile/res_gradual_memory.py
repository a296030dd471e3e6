# expect: memory
chunks = []
while True:
    chunks.append(' ' * 10 ** 7)
