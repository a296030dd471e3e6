# expect: forbidden
import io
ans = len(io.open('{CANARY}').read())
