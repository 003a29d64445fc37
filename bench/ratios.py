#!/usr/bin/env python3
"""Prints diffc/PyTorch time ratios from the JSON lines bench/run_gpu.sh
collects: diffc's `diffrt bench --json` lines and torch_baselines.py's
--json output, paired as listed in pairs.txt (diffc label, PyTorch case,
PyTorch variant, target ratio or '-', description)."""
import json
import sys


def load_lines(path):
    out = []
    try:
        text = open(path).read()
    except OSError as e:
        print(f"cannot read {path}: {e}")
        return out
    text = text.strip()
    if text.startswith("["):
        return json.loads(text)
    for line in text.splitlines():
        line = line.strip()
        if line:
            out.append(json.loads(line))
    return out


def main():
    ours = {r["case"]: r for r in load_lines(sys.argv[1])}
    torch = {(r["case"], r.get("variant")): r for r in load_lines(sys.argv[2]) if "ms" in r}
    print(f"{'what':48} {'diffc ms':>9} {'torch ms':>9} {'ratio':>7} {'target':>7}  met")
    for line in open(sys.argv[3]):
        parts = line.split(maxsplit=4)
        if len(parts) < 5:
            continue
        label, case, variant, target, what = parts
        a = ours.get(label)
        b = torch.get((case, variant))
        if not a or not b:
            print(f"{what.strip()[:48]:48} {'-':>9} {'-':>9}   (missing: {'diffc' if not a else 'torch ' + variant})")
            continue
        ratio = a["ms"] / b["ms"]
        met = "" if target == "-" else ("yes" if ratio <= float(target) else "no")
        print(f"{what.strip()[:48]:48} {a['ms']:9.3f} {b['ms']:9.3f} {ratio:7.3f} {target:>7}  {met}")
    extra = [r for r in load_lines(sys.argv[2]) if "fwd_tflops" in r]
    for r in extra:
        print(f"torch {r['case']} {r['variant']}: fwd {r['fwd_ms']} ms = {r['fwd_tflops']} TFLOP/s")


if __name__ == "__main__":
    main()
