#!/usr/bin/env python3
"""Top functions of a callgrind_annotate table (run with --auto=no), one line each.

usage: callgrind_top.py ANNOTATE_OUTPUT N [inclusive|self]

callgrind_annotate lists "Ir (pct) file:function [object]"; code inlined from other
files shows up as extra rows for the same function, so rows are merged by function
name: self costs are summed, inclusive costs take the largest row (summing would
count the inlined callee's share twice). Thread-entry and tokio scheduler frames,
which include everything, are left out of the inclusive list.
"""
import collections
import re
import sys

path, top = sys.argv[1], int(sys.argv[2])
mode = sys.argv[3] if len(sys.argv) > 3 else "self"
row = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$")
file_fn = re.compile(r"^(.*?\.(?:rs|c|S|h)|\?\?\?|\./[^:]*):(.*)$")
wrappers = re.compile(
    r"^(std::sys::backtrace|start_thread|<std::sys::thread|core::ops::function::FnOnce::call_once"
    r"|std::thread|tokio::runtime::(context|blocking|task::(raw|harness|core)|scheduler)"
    r"|<tokio::runtime::blocking|clone3?$|0x)"
)
total = None
agg = collections.Counter()
for line in open(path, errors="replace"):
    m = row.match(line)
    if not m:
        continue
    ir = int(m.group(1).replace(",", ""))
    rest = re.sub(r"\s+\[[^\]]*\]\s*$", "", m.group(2))
    if rest.startswith("PROGRAM TOTALS"):
        total = ir
        continue
    m2 = file_fn.match(rest)
    fn = m2.group(2) if m2 else rest
    if mode == "inclusive":
        agg[fn] = max(agg[fn], ir)
    else:
        agg[fn] += ir
print(f"{'instructions':>15} {'share':>7}  function   (total {total:,} instructions)")
n = 0
for fn, ir in agg.most_common():
    if mode == "inclusive" and wrappers.match(fn):
        continue
    print(f"{ir:>15,} {100 * ir / total:6.2f}%  {fn[:160]}")
    n += 1
    if n >= top:
        break
