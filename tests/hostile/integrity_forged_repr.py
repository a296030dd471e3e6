# expect: ok
class X(int):
    def __repr__(self):
        return '1\t\n' + 'ok\t999\t\n' * 200

    def __float__(self):
        return 999.0

ans = X(1)
