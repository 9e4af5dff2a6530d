#!/usr/bin/env python3
"""Deterministic Next.js-style build tree for scripts/bench: usage bench-gen-tree.py DIR.

About 20 500 files / 320 MB: minified JS chunks, JSON manifests and page data, source maps
(large, compressible JSON) and incompressible binaries (images, fonts). Same bytes every run
(seeded PRNG), so packaging figures are comparable between runs and tools.
"""
import os
import random
import sys

out = sys.argv[1]
rng = random.Random(20240608)
words = ["function", "return", "const", "let", "var", "this", "props", "children", "useState",
         "useEffect", "React", "createElement", "null", "undefined", "true", "false", "new",
         "Promise", "then", "async", "await", "export", "default", "import", "from", "object",
         "Array", "map", "filter", "reduce", "length", "push", "className", "onClick", "div",
         "span", "window", "document", "JSON", "stringify", "parse", "Error", "throw", "typeof"]
idents = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$")
                  for _ in range(rng.randint(1, 3))) for _ in range(3000)]
punct = ["(", ")", "{", "}", ";", ",", ".", "=", "=>", "&&", "||", "?", ":", "[", "]", "+", "!"]

def code_pool(n):
    parts = []
    size = 0
    while size < n:
        r = rng.random()
        if r < 0.35:
            t = rng.choice(words)
        elif r < 0.75:
            t = rng.choice(idents)
        elif r < 0.95:
            t = rng.choice(punct)
        else:
            t = '"%s"' % rng.choice(idents) + str(rng.randint(0, 99999))
        parts.append(t)
        size += len(t)
    return "".join(parts).encode()

js_pool = code_pool(6 << 20)
b64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/;,"
map_pool = bytes(rng.choice(b64) for _ in range(3 << 20))

def piece(pool, n):
    off = rng.randrange(0, len(pool) - n)
    return pool[off:off + n]

def write(rel, data):
    p = os.path.join(out, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)

total = 0
files = 0
for i in range(12000):  # JS chunks, 1-24 KB
    n = rng.randint(1000, 24000)
    d = b"\"use strict\";(self.webpackChunk_N_E=self.webpackChunk_N_E||[]).push([[%d]," % i + piece(js_pool, n)
    write(".next/static/chunks/pages/p%03d/%05d-%016x.js" % (i % 300, i, rng.getrandbits(64)), d)
    total += len(d); files += 1
for i in range(4000):  # source maps, 10-60 KB
    n = rng.randint(10000, 60000)
    d = (b'{"version":3,"file":"%d.js","sources":["webpack://_N_E/./src/p%d.tsx"],"names":[],"mappings":"' % (i, i)
         + piece(map_pool, n // 2) + b'","sourcesContent":["' + piece(js_pool, n // 2) + b'"]}')
    write(".next/static/chunks/pages/p%03d/%05d.js.map" % (i % 300, i), d)
    total += len(d); files += 1
for i in range(4000):  # JSON page data / manifests, 0.2-4 KB
    n = rng.randint(200, 4000)
    d = b'{"pageProps":{"id":%d,"data":"' % i + piece(js_pool, n).replace(b'"', b"'") + b'"},"__N_SSG":true}'
    write(".next/server/pages/p%03d/%05d.json" % (i % 200, i), d)
    total += len(d); files += 1
for i in range(520):  # incompressible: images and fonts, 20-300 KB
    n = rng.randint(20000, 300000)
    ext = ["png", "jpg", "webp", "woff2"][i % 4]
    write("public/assets/%02d/img%04d.%s" % (i % 40, i, ext), rng.randbytes(n))
    total += n; files += 1
print(f"{files} files, {total / 1e6:.0f} MB")
