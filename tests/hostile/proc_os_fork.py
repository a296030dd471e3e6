# expect: forbidden
import os
ans = os.fork()
