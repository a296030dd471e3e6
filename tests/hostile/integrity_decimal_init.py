# expect: ok
import decimal
decimal.getcontext().__init__(prec=2)
ans = 1
