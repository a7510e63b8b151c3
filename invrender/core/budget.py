"""A memory budget for allocations whose size comes from the input: refused before they are made.

A size read from a file (a checkpoint's input size, a volume's grid) can ask for more memory than the
machine has; the allocation then fails late (a MemoryError or the kernel's OOM killer, after minutes
of work) instead of at once in one line that names the file and the value. `check_allocation`
compares the planned bytes with the memory available now.
"""

from __future__ import annotations

import os
from pathlib import Path

from invrender.core.io import InputError

#: Share of the available memory one planned allocation may take: the rest is for what the job
#: allocates besides it (copies, gradients, the libraries' own buffers) and for other processes.
BUDGET_FRACTION = 0.5


def available_bytes() -> int | None:
    """Memory available to a new allocation now, bytes: Linux's MemAvailable (free memory plus the
    caches the kernel can drop); elsewhere the free physical pages, or all of them where the system
    does not count free pages (macOS); None where it cannot be told (no `os.sysconf`)."""
    meminfo = Path("/proc/meminfo")
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the file gives kB
    except (OSError, ValueError, IndexError):
        pass
    for name in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            return os.sysconf(name) * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            continue
    return None


def check_allocation(path: str | os.PathLike | None, what: str, planned: float) -> None:
    """InputError naming `path` and `what` (the input's value that sets the size, e.g. "size 1000000")
    when `planned` bytes exceed BUDGET_FRACTION of the memory available now (no check where that is
    unknown: the allocation itself then fails, as without this check)."""
    available = available_bytes()
    if available is None:
        return
    budget = available * BUDGET_FRACTION
    if planned > budget:
        raise InputError(
            path,
            f"{what} needs {format_bytes(planned)} of memory, more than the {format_bytes(budget)} a job may take "
            f"here ({BUDGET_FRACTION:.0%} of the {format_bytes(available)} available now)",
        )


def format_bytes(count: float) -> str:
    """1.5e9 -> "1.5 GB" (decimal units)."""
    units = ("bytes", "kB", "MB", "GB", "TB", "PB")
    power = 0
    while count >= 1000 and power < len(units) - 1:
        count, power = count / 1000, power + 1
    return f"{count:.3g} {units[power]}"
