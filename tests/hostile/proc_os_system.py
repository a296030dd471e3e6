# expect: forbidden
import os
ans = os.system('touch {WRITE}')
