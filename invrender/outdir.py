"""The output folder of a run: checked before anything is written, and held by one run at a time.

A run holds its `--out` through an advisory lock on the folder itself (flock, released by the kernel
when the process ends, however it ends), so no lock file is left behind: a whole run takes it
exclusively, a shard (`--num-parts`/`--part-id`, e.g. one task of a SLURM array) shared, so that
the shards of one run write their own manifests side by side while another whole run is kept out.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from invrender.config import ConfigError
from invrender.messages import warning_line

#: Seconds between attempts while `--wait`ing for another run's lock.
WAIT_POLL = 1.0


def check_out_folder(path: Path, option: str = "--out") -> None:
    """ConfigError unless `path` is, or can be made, a folder this process may write into."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: is a file, not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {path}: {existing} is a file, so the folder cannot be made")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: {existing} is not writable")


def check_out_file(path: Path, option: str) -> None:
    """ConfigError unless `path` can be written as a file (it is not a folder, its folder is writable)."""
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file name")
    check_out_folder(path.parent, option)


@contextmanager
def run_lock(out: Path, shard: bool = False, wait: bool = False) -> Iterator[None]:
    """Hold `out` for this run: ConfigError at once if another run holds it (or wait for it with
    `wait`). The folders this made (`out` and any missing parents) that the run left empty (every
    input was bad, or a check in the run refused it) are removed again. Without flock (Windows) the folder
    is checked but not locked."""
    check_out_folder(out)
    made = missing_folders(out)
    out.mkdir(parents=True, exist_ok=True)
    fd = _locked_folder(out, shard, wait) if fcntl is not None else None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)
        remove_empty(made)


def missing_folders(path: Path) -> list[Path]:
    """`path` and its parents that do not exist yet, innermost first: what making it would create."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Remove `folders` (innermost first, from `missing_folders`) as long as they are empty: a run or
    command that wrote nothing leaves nothing."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): neither are the folders around it
            return


def _locked_folder(out: Path, shard: bool, wait: bool) -> int:
    """An open descriptor of `out` holding its lock (shared for a shard, else exclusive)."""
    mode = (fcntl.LOCK_SH if shard else fcntl.LOCK_EX) | fcntl.LOCK_NB
    while True:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, mode)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                print(
                    warning_line(f"--out {out}: this file system has no locks; nothing stops another run writing here"),
                    file=sys.stderr,
                )
                return os.open(out, os.O_RDONLY | os.O_DIRECTORY)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise ConfigError(f"--out {out}: cannot lock the folder ({err.strerror})") from None
            if not wait:
                raise ConfigError(
                    f"--out {out}: another run is writing into this folder; wait for it to end "
                    "(--wait) or choose another --out"
                ) from None
            time.sleep(WAIT_POLL)
            continue
        if out.is_dir() and os.stat(out).st_ino == os.fstat(fd).st_ino:
            return fd
        os.close(fd)  # the run before removed the (empty) folder while this one waited: lock the new one
