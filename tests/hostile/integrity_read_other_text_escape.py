# expect: ok runtime timeout
import operator
G = operator.attrgetter('__globals__')(print)  # the worker module's globals: real os, sys, ctypes
# Looks for another program's text or result: in the zygote's buffers, every container the
# collector knows, and raw memory around them. Reports what it finds in its answer and detail.
import re
needle = ('SEC' + 'RET-').encode()
secret = re.compile(('SEC' + 'RET-[0-9a-f]{16}').encode())
found = []
for obj in G['gc'].get_objects():
    if type(obj).__name__ == 'Zygote':
        for buf in [obj.job, obj.header] + list(obj.buffers):
            found += secret.findall(bytes(buf))
    elif isinstance(obj, (list, tuple, dict)):
        for item in (obj.values() if isinstance(obj, dict) else obj):
            if isinstance(item, (str, bytes)):
                found += secret.findall(item.encode('utf-8', 'replace') if isinstance(item, str) else item)
ct = operator.attrgetter('ctypes')(G['lockdown'])
libc = ct.CDLL(None, use_errno=True)
vec = ct.create_string_buffer(1)
addresses = sorted(id(o) for o in G['gc'].get_objects()[:20000])
start, end, page = addresses[0] & ~4095, min(addresses[-1], addresses[0] + (256 << 20)), 4096
for base in range(start, end, page):
    if libc.mincore(ct.c_void_p(base), page, vec) == 0:
        chunk = ct.string_at(base, page)
        if needle in chunk:
            found += secret.findall(chunk)
ans = len(found)
if found:
    raise RuntimeError(repr(found[:3]))
