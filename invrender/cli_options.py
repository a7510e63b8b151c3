"""Options every method command takes, and the start of a run they share.

A method's command lists these annotated types in its signature (Typer needs them there) and
calls `start_run` to turn them into a config, a device and the input list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from omegaconf import DictConfig

from invrender.config import ConfigError, compose_config, resolve_device, to_plain
from invrender.runner import expand_inputs, split_arguments

Arguments = Annotated[list[str], typer.Argument(help="Input files, folders or globs, then optional key=value config overrides.", show_default=False)]
OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if needed).")]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed: same input, config and seed give the same output.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no per-input lines; errors only.")]
ConfigName = Annotated[str, typer.Option("--config", "-c", help="Config name: configs/<method>/NAME.yaml.")]
Resume = Annotated[bool, typer.Option("--resume", help="Skip inputs whose outputs all exist already.")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="CPU threads for torch (default: torch's choice).")]


@dataclass
class RunStart:
    inputs: list[Path]
    cfg: DictConfig
    device: torch.device
    run_info: dict


def start_run(method: str, config_dir: str, arguments: list[str], config: str, device: str, seed: int, threads: int | None) -> RunStart:
    """Split arguments, compose the config, choose the device; ConfigError on any bad setting."""
    inputs, overrides = split_arguments(arguments)
    if not inputs:
        raise ConfigError("no input given")
    cfg = compose_config(config_dir, config, overrides)
    dev = resolve_device(device)
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads {threads}: must be at least 1")
        torch.set_num_threads(threads)
    run_info = {
        "method": method,
        "config_name": config,
        "overrides": overrides,
        "config": to_plain(cfg),
        "device": str(dev),
        "seed": seed,
        "torch_threads": torch.get_num_threads(),
    }
    return RunStart(expand_inputs(inputs), cfg, dev, run_info)
