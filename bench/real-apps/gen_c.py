#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""gen_c.py N: writes to stdout a C file of N small functions and a main() calling some,
which gcc -O2 compiles in one translation unit, its memory growing with N (~55 KB a function
with GCC 12). The same N gives the same file."""
import random
import sys

n = int(sys.argv[1])
r = random.Random(3)
out = []
for i in range(n):
    out.append(f"int f{i}(int x){{int a[16]; for(int j=0;j<16;j++) a[j]=x*{r.randint(1, 999)}+j; "
               f"int s=0; for(int j=0;j<16;j++) s+=a[j]*(j^{i % 7}); return s+{i}; }}\n")
out.append("int main(void){int s=0;" + "".join(f"s+=f{i}(s&255);" for i in range(0, n, 7)) +
           "return s&127;}\n")
sys.stdout.write("".join(out))
