"""cell-seg stage 2 on large frames: the class probabilities of one frame in one pass against in
tiles (`stage2.tile`), with the default stage-2 network (random weights; the cost does not depend on
them): seconds and the peak resident memory of a fresh process. That the tiles give the one-pass
result is tested (tests/methods/cell_seg/test_stage2.py, with a network whose output varies with its input).

    python bench/stage2_tiles.py [--threads 2]
"""

from __future__ import annotations

import resource
import time

import numpy as np
from fresh_process import results_in_fresh_processes, threads_or_run_case

CASES = [(1024, 0), (2048, 0), (2048, 1024), (2048, 512), (4096, 0), (4096, 1024)]


def run_case(size: int, tile: int, threads: int) -> dict:
    import torch

    from invrender.config import compose_config
    from invrender.methods.cell_seg.stage2 import build_network, class_probabilities

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    network = build_network(compose_config("cell_seg", "default", []).stage2).eval()
    image = np.random.default_rng(0).random((size, size)).astype(np.float32)
    start = time.perf_counter()
    probabilities = class_probabilities(network, image, tile)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    assert probabilities.shape == (3, size, size)
    return {"seconds": seconds, "peak_mb": peak}


def main() -> None:
    threads = threads_or_run_case(__doc__, run_case)
    if threads is None:
        return
    print(f"cell-seg stage 2, class probabilities of one frame, default network, {threads} thread(s), CPU")
    print()
    print("| frame | tile | seconds | peak MB |")
    print("| --- | --- | --- | --- |")
    for (size, tile), r in results_in_fresh_processes(__file__, CASES, threads):
        print(f"| {size}x{size} | {tile or 'one pass'} | {r['seconds']:.1f} | {r['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
