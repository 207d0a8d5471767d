#!/usr/bin/env python3
"""Medians of an alternated A/B run (tests/device/tg_ab.sh, rowq_run.sh): per (KEY, test,
label) the median t/s over the rounds with every value in brackets, then for each BASE
label the ratio of every other label's median to it.
   usage: ab_table.py JSONL KEY TITLE BASE[,BASE...]"""
import json
import statistics as st
import sys

path, key, title, bases = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(',')
rows = [json.loads(line) for line in open(path) if line.strip()]
k = {}
for r in rows:
    k.setdefault((r[key], r['test'], r['label']), []).append(r['ts'])
print(title + ", median of the rounds, values in brackets")
for (m, test, label) in sorted(k):
    v = k[(m, test, label)]
    print(f"{m:11} {test:6} {label:7} {st.median(v):9.2f}  {[round(x, 2) for x in v]}")
labels = sorted({r['label'] for r in rows})
for m, test in sorted({(r[key], r['test']) for r in rows}):
    for ref in bases:
        base = k.get((m, test, ref))
        for label in labels:
            v = k.get((m, test, label))
            if base and v and label != ref:
                print(f"{m} {test}: {label} / {ref} = {st.median(v) / st.median(base):.3f}")
