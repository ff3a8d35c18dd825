#!/usr/bin/env python3
"""The table of every kernel that ran on the simulated GPU, read from one or more run logs.

Usage: kernels.py LOG [LOG ...]   (each the stdout of a program run with HITGPU_KERNEL_TRACE=1 on the simulator)

A log holds, in order (bench/gpusim/build.sh's driver patch and HitGpu's kernel trace):
  [hitgpu] catalog NAME                         every kernel a GPU can run (once a process)
  [gpusim-shim] module H loaded (...)           the driver loads a module...
  [hitgpu] kernel cuda NAME                     ...which is this kernel (standard error, right after the load)
  [gpusim-shim] launch module H ENTRY grid=(..) block=(..) dynsmem=N
  gpu_sim_cycle = C / gpu_ipc = I               the launch's figures, in timing mode only
  [hitgpu] case NAME                            (bench/gpusim/Cycles) the launches after it, until the next, are NAME's
Prints one row a kernel (launches; cycles and IPC where the log has them), then every catalog kernel that never
ran, then (where the log names cases) one row a case with its cycles and the kernels it ran; exits 1 if a launch
cannot be named (the trace and the driver's modules disagree).
"""
import re
import sys
from collections import OrderedDict

MODULE = re.compile(r"\[gpusim-shim\] module (\d+) loaded")
KERNEL = re.compile(r"\[hitgpu\] kernel (\S+) (\S+)$")
CATALOG = re.compile(r"\[hitgpu\] catalog (\S+)$")
LAUNCH = re.compile(r"\[gpusim-shim\] launch module (\d+) (\S+) grid=\((\d+),(\d+),(\d+)\) block=\((\d+),(\d+),(\d+)\) dynsmem=(\d+)")
# The markers are searched anywhere in a line: the simulator leaves some of its lines unended, and the next
# program line then starts after them.
CYCLES = re.compile(r"^gpu_sim_cycle = (\d+)")
IPC = re.compile(r"^gpu_ipc =\s*([0-9.]+)")
CASE = re.compile(r"\[hitgpu\] case (.+)$")


def read(paths):
    catalog, rows, unnamed, cases = [], OrderedDict(), [], OrderedDict()
    for path in paths:
        names, pending, last, case = {}, None, None, None  # module handles are per process: one log each
        with open(path, errors="replace") as log:
            for line in log:
                line = line.rstrip("\n")
                if m := CASE.search(line):
                    case = cases.setdefault(m.group(1), {"launches": 0, "cycles": 0, "kernels": OrderedDict()})
                elif m := CATALOG.search(line):
                    if m.group(1) not in catalog:
                        catalog.append(m.group(1))
                elif m := MODULE.search(line):
                    pending = m.group(1)
                elif m := KERNEL.search(line):
                    if m.group(1) != "cpu" and pending is not None:
                        names[pending], pending = m.group(2), None
                elif m := LAUNCH.search(line):
                    name = names.get(m.group(1))
                    if name is None:
                        unnamed.append(f"{path}: module {m.group(1)} ({m.group(2)})")
                        name = f"? {m.group(2)}"
                    row = rows.setdefault(name, {"launches": 0, "cycles": 0, "timed": 0, "insn_cycles": 0.0, "shapes": set()})
                    row["launches"] += 1
                    grid = int(m.group(3)) * int(m.group(4)) * int(m.group(5))
                    row["shapes"].add(f"{grid}x{int(m.group(6)) * int(m.group(7)) * int(m.group(8))}")
                    last = row
                    if case is not None:
                        case["launches"] += 1
                        case["kernels"][name] = case["kernels"].get(name, 0) + 1
                        row["case"] = case
                elif (m := CYCLES.match(line)) and last is not None:
                    last["cycles"] += int(m.group(1))
                    last["timed"] += 1
                    last["pending_cycles"] = int(m.group(1))
                    if "case" in last:
                        last["case"]["cycles"] += int(m.group(1))
                elif (m := IPC.match(line)) and last is not None and "pending_cycles" in last:
                    last["insn_cycles"] += float(m.group(1)) * last.pop("pending_cycles")
    return catalog, rows, unnamed, cases


def main():
    catalog, rows, unnamed, cases = read(sys.argv[1:])
    timed = any(r["timed"] for r in rows.values())
    print("| kernel | launches | groups x threads seen |" + (" cycles (sum) | IPC |" if timed else ""))
    print("|---|---:|---|" + ("---:|---:|" if timed else ""))
    for name in sorted(rows):
        r = rows[name]
        shapes = ", ".join(sorted(r["shapes"], key=lambda s: [int(x) for x in s.split("x")])[:4]) + (" ..." if len(r["shapes"]) > 4 else "")
        cells = f"| {name} | {r['launches']} | {shapes} |"
        if timed:
            ipc = r["insn_cycles"] / r["cycles"] if r["cycles"] else 0
            cells += f" {r['cycles']:,} | {ipc:.1f} |" if r["timed"] else " | |"
        print(cells)
    ran = set(rows)
    missing = [k for k in catalog if k not in ran]
    print(f"\n{len([k for k in catalog if k in ran])} of the {len(catalog)} kernels of the GPU catalog ran; {sum(r['launches'] for r in rows.values())} launches")
    for k in missing:
        print(f"not executed: {k}")
    if cases:
        print("\n| case | launches | cycles (sum) | kernels (launches) |")
        print("|---|---:|---:|---|")
        for name, c in cases.items():
            kernels = ", ".join(f"{k} ({n})" for k, n in c["kernels"].items())
            print(f"| {name} | {c['launches']} | {c['cycles']:,} | {kernels} |")
    for u in unnamed:
        print(f"unnamed launch: {u}")
    return 1 if unnamed else 0


if __name__ == "__main__":
    sys.exit(main())
