# expect: forbidden
import pty
pty.spawn('/bin/sh')
ans = 1
