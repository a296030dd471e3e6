# expect: forbidden
import subprocess
subprocess.run(['touch', '{WRITE}'])
ans = 1
