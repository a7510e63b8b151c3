"""invrender: explicit shapes (splines, meshes, polygons) from images by differentiable rendering."""

import os

# GNU OpenMP (torch's and finufft's thread pools) spins for 300 000 iterations before a waiting
# thread sleeps. When another process shares the cores, the spinning threads take the CPU from the
# ones doing work, and a fit runs 3-4 times slower instead of about 1.5 times (bench/README.md,
# "Shared cores"). 1000 is what libgomp itself uses when it knows the cores are oversubscribed.
# It must be set before libgomp is loaded (by `import torch`); a user's own setting wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "1000"
