"""Copy each method's pictures from the outputs of `make demo-all` into docs/, under stable names
`docs/<method>.<figure>.png`, for the README's Pictures section.

    .venv/bin/python docs/make_pictures.py [DEMO_OUT [DOCS]]     # default: demo-out/ and docs/

`make demo-all` runs it after its demos. The pictures are the ones the README's outputs tables
name; one missing from DEMO_OUT is an error (exit 1, naming every missing file, nothing copied),
not skipped, so that docs/ never mixes pictures of two runs.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: docs/<name> <- DEMO_OUT/<path>, in the order of the README's methods.
PICTURES = {
    "spline-refine.overlay.png": "spline-refine/worms.overlay.png",
    "spline-refine.loss.png": "spline-refine/worms.loss.png",
    "mesh-fit.slices.png": "mesh-fit/spot.slices.png",
    "mesh-fit.loss.png": "mesh-fit/spot.loss.png",
    "acdr.curves.png": "acdr-train/curves.png",
    "acdr.examples.png": "acdr-train/examples.png",
    "acdr.overlay.png": "acdr-predict/shape_0000.overlay.png",
    "cell-seg.overlay.png": "cell-seg/nuclei/img2d_left.overlay.png",
    "cell-seg.loss.png": "cell-seg/nuclei/img2d_left.loss.png",
    "cell-seg.frame.png": "cell-seg/01_RES/overlays/t007.png",
    "cell-seg.tracks.png": "cell-seg/01_RES/tracks.png",
    "spine-seg.slices.png": "spine-seg/synth-verse004_lumbar-s0_ct.slices.png",
    "spine-seg.loss.png": "spine-seg/synth-verse004_lumbar-s0_ct.loss.png",
}


def copy_pictures(demo: Path, docs: Path) -> list[Path]:
    """Copy every picture of PICTURES from `demo` to `docs`; the copies' paths. FileNotFoundError,
    naming every missing picture, before anything is copied."""
    missing = [str(demo / source) for source in PICTURES.values() if not (demo / source).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} picture(s) missing (run `make demo-all`): {', '.join(missing)}")
    docs.mkdir(parents=True, exist_ok=True)
    copies = []
    for name, source in PICTURES.items():
        shutil.copyfile(demo / source, docs / name)
        copies.append(docs / name)
    return copies


def main(argv: list[str]) -> int:
    demo = Path(argv[0]) if argv else ROOT / "demo-out"
    docs = Path(argv[1]) if len(argv) > 1 else ROOT / "docs"
    try:
        copies = copy_pictures(demo, docs)
    except FileNotFoundError as err:
        print(f"make_pictures: error: {err}", file=sys.stderr)
        return 1
    print(f"make_pictures: copied {len(copies)} pictures to {docs}: {', '.join(p.name for p in copies)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
