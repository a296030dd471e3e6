# expect: forbidden
exit(0)
