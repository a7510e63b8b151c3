"""What invrender tells the user on stderr, in one form for every command:

    invrender: error: <file, folder or option>: <problem>
    invrender: warning: <file, folder or option>: <problem>

An error stopped the run (exit code 2: bad usage, config or input; nothing is written) or one input
(exit code 1: the others still ran); a warning is about a finished run or input that the user must
know of (a fit that diverged, a manifest that could not be written this time).
"""

from __future__ import annotations

import re

PROGRAM = "invrender"


def error_line(problem: str) -> str:
    """`problem` ("<name>: <what is wrong>") as the error line on stderr."""
    return f"{PROGRAM}: error: {one_line(problem)}"


def warning_line(problem: str) -> str:
    """`problem` ("<name>: <what to know>") as the warning line on stderr."""
    return f"{PROGRAM}: warning: {one_line(problem)}"


def about(name: str, problem: str) -> str:
    """`problem` prefixed with the name of what it is about, unless it names it first already (an
    InputError's message starts with its file, which may be followed by " line 3: ...")."""
    return problem if problem.startswith(name) else f"{name}: {problem}"


def one_line(text: str) -> str:
    """`text` on one line: each line break, with the white space around it, made one space (a
    library's message may span lines)."""
    return re.sub(r"\s*[\r\n]\s*", " ", text).strip()
