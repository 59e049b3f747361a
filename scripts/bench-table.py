#!/usr/bin/env python3
"""Prints the latest criterion results under target/criterion as a Markdown
table (median time and throughput), for docs/BENCHMARKS.md.

Usage: python3 scripts/bench-table.py [target/criterion]
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
rows = []
for est in sorted(root.glob("**/new/estimates.json")):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    median_ns = json.loads(est.read_text())["median"]["point_estimate"]
    thr = bench.get("throughput") or {}
    if "Elements" in thr:
        per_s = thr["Elements"] / (median_ns / 1e9)
        rate = f"{per_s / 1e3:,.1f} k/s"
    elif "Bytes" in thr:
        per_s = thr["Bytes"] / (median_ns / 1e9)
        rate = f"{per_s / 2**30:,.2f} GiB/s"
    else:
        rate = "-"
    if median_ns >= 1e6:
        t = f"{median_ns / 1e6:,.2f} ms"
    elif median_ns >= 1e3:
        t = f"{median_ns / 1e3:,.2f} µs"
    else:
        t = f"{median_ns:,.0f} ns"
    rows.append((bench["full_id"], t, rate))

print("| bench | median time | throughput |")
print("|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]} |")
