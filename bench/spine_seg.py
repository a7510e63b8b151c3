"""Vertebra segmentation quality and time of `invrender spine-seg`: on synthetic CTs that differ from
the template's own subject in one factor at a time, and on a real CT of another person.

`factors` (the default): for each row, `invrender synth ct` makes a CT of the real VerSe mask
(verse004, T9-L5) through a random smooth deformation (up to 4 mm, plus a rotation of up to 3
degrees and a shift of up to 2 mm), with the field of view of --levels plus 20 mm (default T11-L2,
so that the 6 vertebrae T10-L3 have their centroids in view), and one factor changed against the
base row (1 mm voxels in the mask's own PIR orientation, body centroids): LAS orientation, 0.7 x 0.7
x 2.5 mm voxels, a 15 degree tilt, a person 0.85 or 1.15 times the size, distractors (ribs, aorta
and kidneys with contrast, lungs), the centroids of the whole labels instead of the bodies' (10-15
mm further back), and all of them together. As in VerSe, every
vertebra whose centroid lies in the field of view is given, fitted and scored. `spine-seg` fits the
shipped template through the command line with the default config; the Dice per level (VerSe's
2|A and B| / (|A| + |B|), on the CT's grid) is read from its metrics.json.

`real`: the abdominal CT that TotalSegmentator's source distribution ships for its tests (3 mm
voxels, RAS, contrast-enhanced; fetched from PyPI with `pip download`), with the vertebra labels
that ship with it (TotalSegmentator's own output, not a manual annotation) as the reference, and
the centroids of those labels (the whole vertebra's, as a user without body centroids would give).
T12 is cut by the top of the scan.

    python bench/spine_seg.py [factors] [--seeds 0] [--levels 18-21] [--rows base las ...] [overrides ...]
    python bench/spine_seg.py real [overrides ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "verse"
MASK = SHARED / "sub-verse004_seg-vert_msk.nii.gz"
CENTROIDS = SHARED / "sub-verse004_seg-subreg_ctd.json"
OUT = Path(__file__).parent / "out" / "spine_seg"
INVRENDER = [sys.executable, "-m", "invrender.cli"]

#: name: (what the row changes, `synth ct` options, whether the centroids are the bodies')
ROWS = {
    "base": ("1 mm, PIR (the mask's own), body centroids", [], True),
    "las": ("LAS orientation", ["--orientation", "LAS"], True),
    "slices": ("0.7 x 0.7 x 2.5 mm voxels", ["--spacing", "0.7,0.7,2.5"], True),
    "tilt": ("15 degree tilt", ["--tilt", "15"], True),
    "small": ("scale 0.85", ["--scale", "0.85"], True),
    "large": ("scale 1.15", ["--scale", "1.15"], True),
    "distractors": ("ribs, aorta, kidneys, lungs", ["--distractors"], True),
    "label-centroids": ("centroids of the whole labels", [], False),
    "combined": (
        "all: LAS, 0.7 x 0.7 x 2.5 mm, tilt 15, scale 1.15, distractors, label centroids",
        ["--orientation", "LAS", "--spacing", "0.7,0.7,2.5", "--tilt", "15", "--scale", "1.15", "--distractors"],
        False,
    ),
}

#: The real CT: TotalSegmentator's test data, and its label numbers as VerSe codes (S1 and the
#: sliver of T11 are not fitted).
TOTALSEG = "totalsegmentator==2.18.0"
TOTALSEG_FILES = {
    "ct": "tests/reference_files/example_ct.nii.gz",
    "labels": "tests/reference_files/spine_report/example_ct_report/totalseg.nii.gz",
}
TOTALSEG_CODES = {26: 26, 27: 24, 28: 23, 29: 22, 30: 21, 31: 20, 32: 19, 33: 18}
REAL_FITTED = (19, 20, 21, 22, 23, 24)


def run(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def segment(ct: Path, centroids: Path, truth: Path, out: Path, overrides: list[str]) -> tuple[dict[str, float], float]:
    seconds = run(
        [
            *INVRENDER,
            "spine-seg",
            str(ct),
            "--centroids",
            str(centroids),
            "--gt",
            str(truth),
            "--device",
            "cpu",
            "-q",
            "--out",
            str(out),
            *overrides,
        ]
    )
    stem = ct.name.removesuffix(".nii.gz")
    return json.loads((out / f"{stem}.metrics.json").read_text())["dice"], seconds


def print_table(title: str, rows: dict[str, tuple[dict[str, float], float]]) -> None:
    names = sorted({n for dice, _ in rows.values() for n in dice}, key=lambda n: ("CTLS".index(n[0]), int(n[1:])))
    print(title)
    print()
    print("| run | " + " | ".join(names) + " | mean Dice | lowest | seconds |")
    print("| --- | " + " | ".join("---" for _ in names) + " | --- | --- | --- |")
    for key, (dice, seconds) in rows.items():
        values = list(dice.values())
        print(
            f"| {key} | "
            + " | ".join(f"{dice[n]:.3f}" if n in dice else "-" for n in names)
            + f" | {np.mean(values):.3f} | {min(values):.3f} | {seconds:.0f} |"
        )
    print()


def factors(args: argparse.Namespace) -> None:
    rows = {}
    for seed in args.seeds:
        for name in args.rows:
            what, options, body_centroids = ROWS[name]
            data = OUT / f"{name}-s{seed}"
            run(
                [
                    *INVRENDER,
                    "synth",
                    "ct",
                    "--labels",
                    str(MASK),
                    *(["--centroids", str(CENTROIDS)] if body_centroids else []),
                    "--levels",
                    args.levels,
                    "--seed",
                    str(seed),
                    "--out",
                    str(data),
                    *options,
                ]
            )
            ct = next(data.glob("*_ct.nii.gz"))
            stem = ct.name.removesuffix("_ct.nii.gz")
            rows[f"{name}: {what}, seed {seed}"] = segment(
                ct, data / f"{stem}_ctd.json", data / f"{stem}_msk.nii.gz", OUT / f"fit-{name}-s{seed}", args.overrides
            )
    print_table(
        f"synthetic CTs of verse004, levels {args.levels}, deformation up to 4 mm, 2 CPU threads; "
        f"overrides: {' '.join(args.overrides) or 'none'}",
        rows,
    )


def real_ct() -> tuple[Path, Path, Path]:
    """The TotalSegmentator example CT, its labels as VerSe codes and the labels' centroids (VerSe
    JSON in the image's own axis codes), fetched and written once into OUT/real."""
    import nibabel
    from scipy.ndimage import center_of_mass

    folder = OUT / "real"
    paths = folder / "example_ct.nii.gz", folder / "example_ctd.json", folder / "example_msk.nii.gz"
    if all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            TOTALSEG,
            "-d",
            str(folder),
        ],
        check=True,
    )
    archive = next(folder.glob("totalsegmentator-*.tar.gz"))
    with tarfile.open(archive) as tar:
        root = tar.getnames()[0].split("/")[0]
        for key, member in TOTALSEG_FILES.items():
            (folder / f"source_{key}.nii.gz").write_bytes(tar.extractfile(f"{root}/{member}").read())
    (folder / "source_ct.nii.gz").rename(paths[0])
    labels = nibabel.load(folder / "source_labels.nii.gz")
    data = np.asarray(labels.dataobj)
    verse = np.zeros(data.shape, np.uint8)
    for number, code in TOTALSEG_CODES.items():
        verse[data == number] = code
    image = nibabel.Nifti1Image(verse, labels.affine)
    image.set_qform(labels.affine, code=1)
    image.set_sform(labels.affine, code=1)
    nibabel.save(image, paths[2])
    entries = [{"direction": list(nibabel.aff2axcodes(labels.affine))}]
    for code in REAL_FITTED:
        i, j, k = center_of_mass(verse == code)
        entries.append({"label": code, "X": round(float(i), 2), "Y": round(float(j), 2), "Z": round(float(k), 2)})
    paths[1].write_text(json.dumps(entries))
    return paths


def real(args: argparse.Namespace) -> None:
    ct, centroids, truth = real_ct()
    rows = {
        "TotalSegmentator's example CT (3 mm, RAS, contrast), label centroids": segment(
            ct, centroids, truth, OUT / "fit-real", args.overrides
        )
    }
    print_table(
        "a real CT of another person, reference: the labels shipped with it; overrides: "
        f"{' '.join(args.overrides) or 'none'}",
        rows,
    )
    print(f"pictures: {OUT / 'fit-real'}/example_ct.slices.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=("factors", "real"), default="factors")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--levels", default="18-21")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    (real if args.mode == "real" else factors)(args)


if __name__ == "__main__":
    main()
