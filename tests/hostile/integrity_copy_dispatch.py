# expect: ok
import copy
dispatch = copy._deepcopy_dispatch  # an alias: no attribute store for a static rule to see
dispatch[list] = lambda x, memo: [999]
ans = 1
