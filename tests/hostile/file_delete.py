# expect: forbidden
import os
os.remove('{VICTIM}')
ans = 1
