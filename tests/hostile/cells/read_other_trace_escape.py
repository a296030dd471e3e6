# expect: ok
# Looks for another trace's text or output (SECRET-...) in every object the collector knows and
# in the memory around them; prints what it finds.
x = 1
# %%
import operator, re
G = operator.attrgetter('__globals__')(print)
secret = re.compile(('SEC' + 'RET-[0-9a-f]{16}').encode())
needle = ('SEC' + 'RET-').encode()
found = []
for obj in G['gc'].get_objects():
    if isinstance(obj, dict):
        items = list(obj.keys()) + list(obj.values())
    elif isinstance(obj, (list, tuple)):
        items = obj
    else:
        items = [obj] if isinstance(obj, (str, bytes, bytearray)) else []
    for item in items:
        if isinstance(item, str):
            found += secret.findall(item.encode('utf-8', 'replace'))
        elif isinstance(item, (bytes, bytearray)):
            found += secret.findall(bytes(item))
ct = operator.attrgetter('ctypes')(G['lockdown'])
libc = ct.CDLL(None, use_errno=True)
vec = ct.create_string_buffer(1)
addresses = sorted(id(o) for o in G['gc'].get_objects()[:20000])
start, end = addresses[0] & ~4095, min(addresses[-1], addresses[0] + (256 << 20))
for base in range(start, end, 4096):
    if libc.mincore(ct.c_void_p(base), 4096, vec) == 0:
        chunk = ct.string_at(base, 4096)
        if needle in chunk:
            found += secret.findall(chunk)
print(len(found), found[:3])
