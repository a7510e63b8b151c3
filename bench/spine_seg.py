"""Vertebra segmentation quality and time of `invrender spine-seg` on synthetic CTs.

For each seed, `invrender synth ct` makes a 1 mm CT of the real VerSe mask (verse004, T9-L5) through
a random smooth deformation (up to --deform mm, plus a small rigid motion), with the field of view
of --levels plus 20 mm (default L1-L5). As in VerSe, the centroids of every vertebra whose body
centroid lies in the field of view are given (for L1-L5 also T12, most of which is in view: a
vertebra left out would be taken for its neighbour's bone), and all of them are fitted and scored.
`spine-seg` fits the shipped template (built from the same subject's mask: see the caveat in the
README) through the command line with the default config, and the Dice per level (VerSe's
2|A and B| / (|A| + |B|), on the CT's grid) is read from its metrics.json. In the same run, the
baseline without fitting: the template placed on the centroids (`phases.0.steps=0`).

    python bench/spine_seg.py [--seeds 0 1] [--levels 20-24] [--deform 4] [overrides ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "verse"
MASK = SHARED / "sub-verse004_seg-vert_msk.nii.gz"
CENTROIDS = SHARED / "sub-verse004_seg-subreg_ctd.json"
OUT = Path(__file__).parent / "out" / "spine_seg"
INVRENDER = [sys.executable, "-m", "invrender.cli"]


def run(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--levels", default="20-24")
    parser.add_argument("--deform", type=float, default=4.0)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    rows: dict[str, dict[int, float]] = {}
    seconds: dict[str, float] = {}
    for seed in args.seeds:
        data = OUT / f"ct-s{seed}"
        run([*INVRENDER, "synth", "ct", "--labels", str(MASK), "--centroids", str(CENTROIDS), "--levels", args.levels,
             "--deform", str(args.deform), "--seed", str(seed), "--out", str(data)])
        ct = next(data.glob("*_ct.nii.gz"))
        name = ct.name.removesuffix("_ct.nii.gz")
        common = [str(ct), "--centroids", str(data / f"{name}_ctd.json"), "--gt", str(data / f"{name}_msk.nii.gz"), "--device", "cpu", "-q"]
        for kind, extra in (("template on the centroids (no fit)", ["phases.0.steps=0"]), ("spine-seg fit", [])):
            out = OUT / f"{kind.split()[0]}-s{seed}"
            key = f"{kind}, seed {seed}"
            seconds[key] = run([*INVRENDER, "spine-seg", *common, "--out", str(out), *extra, *args.overrides])
            metrics = json.loads((out / f"{ct.name.removesuffix('.nii.gz')}.metrics.json").read_text())
            rows[key] = metrics["dice"]
    names = sorted({n for dice in rows.values() for n in dice}, key=lambda n: ("CTLS".index(n[0]), int(n[1:])))
    print(f"synthetic CTs of verse004 at 1 mm, levels {args.levels}, deformation up to {args.deform:g} mm, 2 CPU threads; "
          f"overrides: {' '.join(args.overrides) or 'none'}")
    print()
    print("| run | " + " | ".join(names) + " | mean Dice | seconds |")
    print("| --- | " + " | ".join("---" for _ in names) + " | --- | --- |")
    for key, dice in rows.items():
        print(f"| {key} | " + " | ".join(f"{dice[n]:.3f}" if n in dice else "-" for n in names) + f" | {np.mean(list(dice.values())):.3f} | {seconds[key]:.0f} |")


if __name__ == "__main__":
    main()
