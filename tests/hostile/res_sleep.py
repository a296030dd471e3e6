# expect: forbidden
import time
time.sleep(100)
ans = 1
