# expect: forbidden
import multiprocessing
multiprocessing.Process(target=print).start()
ans = 1
