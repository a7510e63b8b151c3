"""SIGTERM and Ctrl-C stop a run even where their KeyboardInterrupt is swallowed (interrupt.py)."""

import json
import os
import signal
import time

import pytest

from invrender.interrupt import raise_if_stopping, stop_deferred, stop_on_signals
from invrender.runner import Job, Runner


def swallowing_sigterm(on_step) -> dict:
    """A job whose library code swallows everything, as a bare `except:` does, while SIGTERM arrives."""
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs inside the try
    except BaseException:
        pass
    return {}


def test_a_swallowed_interrupt_stops_the_run_before_the_next_job(tmp_path):
    ran = []

    def plain(on_step) -> dict:
        ran.append(True)
        return {}

    jobs = [Job("a", [], swallowing_sigterm), Job("b", [], plain), Job("c", [], plain)]
    runner = Runner(tmp_path / "manifest.json", {"method": "test"})
    with stop_on_signals(), pytest.raises(KeyboardInterrupt):
        runner.run(jobs)
    assert not ran
    records = json.loads((tmp_path / "manifest.json").read_text())["inputs"]
    assert [(r["input"], r["status"]) for r in records] == [("a", "done"), ("b", "interrupted"), ("c", "interrupted")]


def test_a_swallowed_interrupt_stops_a_job_at_its_next_step(tmp_path):
    steps = []

    def stepping(on_step) -> dict:
        swallowing_sigterm(on_step)
        for step in range(3):
            steps.append(step)
            on_step("fit", step, 3, 0.0)
        return {}

    runner = Runner(tmp_path / "manifest.json", {"method": "test"})
    with stop_on_signals(), pytest.raises(KeyboardInterrupt):
        runner.run([Job("a", [], stepping)])
    assert steps == [0]
    assert json.loads((tmp_path / "manifest.json").read_text())["inputs"][0]["status"] == "interrupted"


def test_a_deferred_stop_raises_when_its_block_ends():
    with stop_on_signals():
        with pytest.raises(KeyboardInterrupt):
            with stop_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.01)
                reached = True  # the handler ran above without raising
        assert reached


def test_the_handlers_and_the_request_end_with_the_block():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with stop_on_signals():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
        with pytest.raises(KeyboardInterrupt):
            raise_if_stopping()  # still requested: a swallowed interrupt is not forgotten
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    raise_if_stopping()  # a later run in this process starts afresh
