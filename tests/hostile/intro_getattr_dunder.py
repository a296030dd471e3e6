# expect: forbidden
c = getattr((), '__cla' + 'ss__')
ans = len(getattr(c, '__sub' + 'classes__')())
