#!/usr/bin/env python3
"""Writes tests/golden/std_sort.json: what libstdc++'s std::sort and
std::partial_sort (the heap sort introsort falls back to) make of random
inputs with many ties, sorted as llama.cpp sorts its special tokens (ids in
ascending order, compared by a key, greater first). The tokenizer's port
(crates/gguf-loader-llm/src/tokenizer/std_sort.rs) is tested against it.

Usage: python3 scripts/std_sort_golden.py [OUT]   (needs a C++ compiler: $CXX or c++)
Deterministic (fixed seed)."""

import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

CPP = r"""
#include <algorithm>
#include <cstdio>
#include <vector>
int main() {
    int cases;
    if (scanf("%d", &cases) != 1) return 1;
    for (int c = 0; c < cases; c++) {
        int n;
        if (scanf("%d", &n) != 1) return 1;
        std::vector<int> key(n);
        for (int i = 0; i < n; i++) if (scanf("%d", &key[i]) != 1) return 1;
        auto greater = [&](int a, int b) { return key[a] > key[b]; };
        std::vector<int> s(n), h(n);
        for (int i = 0; i < n; i++) s[i] = h[i] = i;
        std::sort(s.begin(), s.end(), greater);
        std::partial_sort(h.begin(), h.end(), h.end(), greater);
        for (int i = 0; i < n; i++) printf("%d ", s[i]);
        printf("\n");
        for (int i = 0; i < n; i++) printf("%d ", h[i]);
        printf("\n");
    }
    return 0;
}
"""


def main():
    root = Path(__file__).resolve().parent.parent
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "tests" / "golden" / "std_sort.json"
    rng = random.Random(20261204)
    cases = []
    for i in range(160):
        n = rng.choice([0, 1, 2, 3, 15, 16, 17, 18, 33, rng.randint(0, 64), rng.randint(64, 700)])
        kinds = rng.choice([1, 2, 3, 5, 20, 1000])
        cases.append([rng.randint(1, kinds) for _ in range(n)])
    # Sorted, reversed and constant runs, and organ pipes.
    for n in (40, 257, 600):
        cases.append(list(range(n)))
        cases.append(list(range(n, 0, -1)))
        cases.append([7] * n)
        cases.append(list(range(n // 2)) + list(range(n // 2, 0, -1)))
    cxx = os.environ.get("CXX", "c++")
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "sort.cpp"
        exe = Path(d) / "sort"
        src.write_text(CPP)
        subprocess.run([cxx, "-O2", "-o", str(exe), str(src)], check=True)
        stdin = f"{len(cases)}\n" + "".join(f"{len(c)} {' '.join(map(str, c))}\n" for c in cases)
        res = subprocess.run([str(exe)], input=stdin, capture_output=True, text=True, check=True)
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    lines = res.stdout.split("\n")
    doc = {"generator": "scripts/std_sort_golden.py", "compiler": version, "cases": []}
    for i, keys in enumerate(cases):
        s = [int(x) for x in lines[2 * i].split()]
        h = [int(x) for x in lines[2 * i + 1].split()]
        doc["cases"].append({"keys": keys, "sort": s, "heap": h})
    text = json.dumps(doc, separators=(",", ":"))
    # One case to a line.
    text = text.replace(',{"keys"', ',\n{"keys"')
    out.write_text(text + "\n")
    print(f"wrote {out} ({len(cases)} cases)", file=sys.stderr)


if __name__ == "__main__":
    main()
