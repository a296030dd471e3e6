# expect: forbidden
import shutil
shutil.rmtree('/tmp')
ans = 1
