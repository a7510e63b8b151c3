"""How many CPU cores this process may use, and why: the default number of torch threads.

torch starts with one thread per core it can see, but on a cluster node the job owns fewer cores
than the node has: SLURM says how many in SLURM_CPUS_PER_TASK, a container or systemd slice caps the
CPU time with a cgroup quota, and `taskset` or the scheduler narrows the affinity mask. More
threads than owned cores make every parallel region wait for threads that are not running, which
costs far more than the lost parallelism (bench/README.md, "Shared cores"). The budget is the
smallest of the three.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

#: cgroup v2 and v1 files holding the CPU quota of this process's group.
CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1 = (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))


@dataclass(frozen=True)
class CpuBudget:
    cores: int  # at least 1
    source: str  # what set it, e.g. "SLURM_CPUS_PER_TASK=4" (for the run record)


def cpu_budget(environ: dict[str, str] | None = None) -> CpuBudget:
    """The cores this process may use: the least of its affinity mask, SLURM_CPUS_PER_TASK and the
    cgroup CPU quota (rounded up), each where present."""
    environ = os.environ if environ is None else environ
    limits = [affinity_limit()]
    for limit in (slurm_limit(environ), cgroup_limit()):
        if limit is not None:
            limits.append(limit)
    return min(limits, key=lambda budget: budget.cores)


def affinity_limit() -> CpuBudget:
    if hasattr(os, "sched_getaffinity"):
        n = len(os.sched_getaffinity(0))
        return CpuBudget(n, f"CPU affinity ({n} of {os.cpu_count()} CPUs)")
    n = os.cpu_count() or 1
    return CpuBudget(n, f"CPU count ({n})")


def slurm_limit(environ) -> CpuBudget | None:
    value = environ.get("SLURM_CPUS_PER_TASK", "")
    if value.isdigit() and int(value) > 0:
        return CpuBudget(int(value), f"SLURM_CPUS_PER_TASK={value}")
    return None


def cgroup_limit(v2: Path = CGROUP_V2, v1: tuple[Path, Path] = CGROUP_V1) -> CpuBudget | None:
    """The cgroup quota as whole cores (a quota of 1.5 cores allows 2 threads), or None without one."""
    try:
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            path = v2
        elif v1[0].is_file():
            quota, period = v1[0].read_text().strip(), v1[1].read_text().strip()
            path = v1[0]
        else:
            return None
        if quota in ("max", "-1") or int(period) <= 0 or int(quota) <= 0:
            return None
        n = max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None
    return CpuBudget(n, f"cgroup CPU quota {quota}/{period} ({path})")


def job_threads(requested: int | None) -> CpuBudget:
    """The torch threads of a job: `--threads` when given, else the cores this process may use."""
    return CpuBudget(requested, "--threads") if requested is not None else cpu_budget()


def threads_record(requested: int | None) -> dict:
    """The run record's entries on threads: how many, and what set the number."""
    threads = job_threads(requested)
    return {"torch_threads": threads.cores, "torch_threads_from": threads.source}
