# expect: forbidden
import pathlib
ans = len(pathlib.Path('{CANARY}').read_text())
