# expect: forbidden
import threading
threading.Thread(target=print).start()
ans = 1
