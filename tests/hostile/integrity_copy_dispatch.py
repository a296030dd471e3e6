# expect: ok
import copy
copy._deepcopy_dispatch[list] = lambda x, memo: [999]
ans = 1
