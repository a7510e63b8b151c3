"""The default torch threads come from the cores the process may use, and the run record says why."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import FAST, make_input, write_init
from invrender.cli import main
from invrender.cpus import CpuBudget, cgroup_limit, cpu_budget, job_threads


def test_slurm_cpus_per_task_lowers_the_budget():
    budget = cpu_budget({"SLURM_CPUS_PER_TASK": "1"})
    assert budget == CpuBudget(1, "SLURM_CPUS_PER_TASK=1")


def test_a_slurm_value_above_the_affinity_does_not_raise_the_budget():
    affinity = len(os.sched_getaffinity(0))
    budget = cpu_budget({"SLURM_CPUS_PER_TASK": str(affinity + 10)})
    assert budget.cores == affinity and "affinity" in budget.source


def test_a_malformed_slurm_value_is_ignored():
    assert cpu_budget({"SLURM_CPUS_PER_TASK": "two"}) == cpu_budget({})


def test_cgroup_v2_quota_is_rounded_up_to_whole_cores(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    missing = (tmp_path / "none", tmp_path / "none")
    assert cgroup_limit(cpu_max, missing).cores == 2
    cpu_max.write_text("50000 100000\n")
    assert cgroup_limit(cpu_max, missing).cores == 1
    cpu_max.write_text("max 100000\n")
    assert cgroup_limit(cpu_max, missing) is None


def test_cgroup_v1_quota(tmp_path):
    quota, period = tmp_path / "cpu.cfs_quota_us", tmp_path / "cpu.cfs_period_us"
    quota.write_text("300000\n")
    period.write_text("100000\n")
    budget = cgroup_limit(tmp_path / "no-v2", (quota, period))
    assert budget.cores == 3 and "300000/100000" in budget.source
    quota.write_text("-1\n")
    assert cgroup_limit(tmp_path / "no-v2", (quota, period)) is None


def test_threads_option_wins_over_the_budget():
    assert job_threads(1) == CpuBudget(1, "--threads")


def test_the_run_record_says_how_many_threads_and_why(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    image, records = make_input(tmp_path / "data", "f0")
    write_init(tmp_path / "data" / "f0.json", records)
    out = tmp_path / "out"
    assert main(["spline-refine", *FAST, str(image), "--out", str(out), "--device", "cpu", "-q"]) == 0
    run = json.loads((out / "manifest.json").read_text())
    assert run["torch_threads"] == 1 and run["torch_threads_from"] == "SLURM_CPUS_PER_TASK=1"


def test_importing_invrender_sets_a_short_openmp_spin_unless_the_user_chose_one():
    code = "import os, invrender; print(os.environ.get('GOMP_SPINCOUNT'))"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout == "1000\n"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout == "None\n"
