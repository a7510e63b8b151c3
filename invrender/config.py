"""Configs: Hydra compose over `invrender/configs/<method>/`, `key=value` overrides, device choice."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from functools import cache, partial
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from invrender.core.schema import BadValue, Rule, check_values

CONFIG_ROOT = Path(__file__).parent / "configs"


class ConfigError(Exception):
    """A bad config name, override or value (exit code 2)."""


def available_configs(method_dir: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_ROOT / method_dir).glob("*.yaml"))


#: Mappings whose keys are not fixed by the default config: loss weights, checked against the loss
#: registry by the method's config check.
OPEN_SECTIONS = frozenset({"loss", "pixel_loss"})


def compose_config(method_dir: str, name: str, overrides: list[str]) -> DictConfig:
    """Compose `configs/<method_dir>/<name>.yaml` with Hydra, applying `key=value` overrides, and
    check it against the method's schema: its `default` config's keys and value kinds, and the
    phase scheduler's keys for `phases`. Raises ConfigError with a one-line message (for an
    unknown key: the key and the nearest valid one)."""
    cfg = _compose(method_dir, name, overrides)
    if overrides:
        _refuse_empty_merges(overrides, cfg)
        as_text: list[tuple[str, str]] = []
        _check_types(
            to_plain(_compose(method_dir, name, [])),
            to_plain(cfg),
            "",
            as_text,
            partial(_optional_in_default, method_dir),
        )
        for key, text in as_text:
            OmegaConf.update(cfg, key, text, merge=False)
    check_config_keys(to_plain(cfg), _method_default(method_dir), f"config {name!r}" if name != "default" else "config")
    return cfg


def check_config_keys(values: dict, schema: dict | None, what: str = "config") -> None:
    """ConfigError for a key of `values` that `schema` (the method's default config, as plain
    containers) does not have, outside the open sections; `phases` against the scheduler's keys."""
    from invrender.core.optim.phases import check_phases
    from invrender.core.schema import check_keys

    def walk(value: object, default: object, where: str) -> None:
        if not (isinstance(value, dict) and isinstance(default, dict)):
            return
        check_keys(value, default, where)
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if path not in OPEN_SECTIONS and path != "phases":
                walk(item, default[key], path)

    if schema is None:
        return
    try:
        walk(values, schema, "")
        if isinstance(values.get("phases"), list):
            check_phases(values["phases"])
    except ValueError as err:
        raise ConfigError(_config_message(what, err)) from None


def check_config_values(cfg: DictConfig, rules: Mapping[str, Rule]) -> None:
    """ConfigError for the first value of `cfg` that its rule refuses (a method's value rules:
    dotted key -> `invrender.core.schema.Rule`), naming the key, the value and what is allowed."""
    try:
        check_values(to_plain(cfg), rules)
    except ValueError as err:
        raise ConfigError(_config_message("config", err)) from None


def _config_message(what: str, err: ValueError) -> str:
    """The one line of a refused config: "config model.knots 0: must be ..." for a bad value,
    "config: unknown key ..." for the rest."""
    return f"{what} {err}" if isinstance(err, BadValue) else f"{what}: {err}"


def _refuse_empty_merges(overrides: list[str], cfg: DictConfig) -> None:
    """ConfigError for `key={}` where the config has entries under `key`: Hydra merges the empty
    mapping into them, so the override would silently change nothing."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element().lstrip("+~")
        if not override.is_sweep_override() and override.value() == {}:
            current = OmegaConf.select(cfg, key, default=None)
            if isinstance(current, DictConfig) and len(current):
                raise ConfigError(
                    f"bad override {key}={{}}: an empty mapping leaves {key} unchanged (Hydra merges mappings); "
                    f"set its entries instead, e.g. {key}.{next(iter(current))}=0"
                )


def _compose(method_dir: str, name: str, overrides: list[str]) -> DictConfig:
    """`configs/<method_dir>/<name>.yaml` composed by Hydra with the overrides; keys that are not in
    the config are refused (Hydra's struct mode) unless prefixed with `+`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    names = available_configs(method_dir)
    if name not in names:
        raise ConfigError(f"--config {name}: no such preset; this method's presets: {', '.join(names)}")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_ROOT / method_dir), version_base=None):
            cfg = compose(config_name=name, overrides=list(overrides))
    except Exception as err:  # Hydra raises several types for parse and composition errors
        message = " ".join(str(err).split())
        missing = re.match(r"Could not override '([^']+)'", message)
        if missing and overrides:
            _refuse_unknown_key(to_plain(_compose(method_dir, name, [])), missing.group(1))
        raise ConfigError(f"bad override or config: {message}") from None
    finally:
        GlobalHydra.instance().clear()
    OmegaConf.set_struct(cfg, False)
    return cfg


def _refuse_unknown_key(config: dict, key: str) -> None:
    """ConfigError naming `key` (dotted, absent from `config`) and the nearest key that exists."""
    from invrender.core.schema import check_keys

    value: object = config
    parts = key.split(".")
    for i, part in enumerate(parts):
        where = ".".join(parts[:i])
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, dict):
            try:
                check_keys({part: None}, value, where)
            except ValueError as err:  # named by the whole key given, e.g. a.b.c when a.b is unknown
                missing = ".".join(parts[: i + 1])
                message = str(err).replace(f"unknown key {missing}", f"unknown key {key}", 1)
                raise ConfigError(f"bad override: {message}") from None
        else:
            break


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "null"


@cache
def _method_default(method_dir: str) -> dict | None:
    """The method's `default` config as plain containers: its schema (None without one)."""
    return to_plain(_compose(method_dir, "default", [])) if "default" in available_configs(method_dir) else None


def _optional_in_default(method_dir: str, key: str) -> bool:
    """Whether `key` is null in the method's `default` config (an optional value)."""
    default = _method_default(method_dir)
    return default is not None and OmegaConf.select(OmegaConf.create(default), key, default=False) is None


def _check_types(
    default: object, value: object, key: str, as_text: list[tuple[str, str]], optional: Callable[[str], bool]
) -> None:
    """Refuse an override that changes the kind of a default value (e.g. `lr=abc`).

    A default of null accepts anything; list items are checked against the default's first item.
    Null is accepted where `optional(key)`, i.e. where the method's `default` config has null: it
    unsets an optional value that a preset sets (`train.max_minutes=null`). A number where the
    default is a string (`stage=2`, a folder `data.root=2024`) is meant as its text: (key, text)
    goes into `as_text`.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"bad override: {key} must be a finite number, got {value!r}")
    if default is None or (value is None and optional(key)):
        return
    if isinstance(default, str) and _kind(value) == "a number":
        as_text.append((key, str(value)))
        return
    if _kind(default) != _kind(value):
        raise ConfigError(f"bad override: {key} must be {_kind(default)}, got {value!r}")
    if isinstance(default, dict):
        for k, v in value.items():
            if k in default:
                _check_types(default[k], v, f"{key}.{k}" if key else str(k), as_text, optional)
    elif isinstance(default, list) and default:
        for i, v in enumerate(value):
            _check_types(default[min(i, len(default) - 1)], v, f"{key}.{i}", as_text, optional)


def to_plain(cfg: DictConfig) -> dict:
    """The resolved config as plain Python containers (for the manifest)."""
    return OmegaConf.to_container(cfg, resolve=True)


def resolve_device(spec: str) -> torch.device:
    """`auto` (CUDA when available, else CPU), `cpu`, `cuda` or `cuda:N`; ConfigError otherwise."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec}: CUDA is not available on this machine (torch {torch.__version__})")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device
    raise ConfigError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N")
