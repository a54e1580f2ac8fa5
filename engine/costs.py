"""Parameter counts and GFLOP per component without torch: a committed table, checked against the config.

Counting the ops (engine/modules/flops.py) builds the model on torch's meta device, which costs a torch import
(seconds). `instructavatar info` reads instead the table in instructavatar/assets/component_costs.json, one
entry per named config, keyed by a digest of the whole config dataclass; a config that changed since the table
was written is counted afresh with torch (and the table says how to refresh it):

    python -m instructavatar.engine.costs --write      # recount every named config and rewrite the table

tests/test_packaging.py checks the table equals a fresh count, so it cannot go stale silently.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import instructavatar

from .config import ModelConfig, get_config

COSTS_FILE = Path(instructavatar.__file__).resolve().parent / "assets" / "component_costs.json"
TABLE_CONFIGS = ("demo", "paper")


@dataclass(frozen=True)
class ComponentCost:
    name: str
    params: int
    gflop: float          # per `unit`
    unit: str


def config_digest(cfg: ModelConfig) -> str:
    """sha256 (16 hex digits) of the config's fields: any size change gives another digest."""
    return hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True, default=str).encode()).hexdigest()[:16]


def tabled_costs(cfg: ModelConfig, path: Path = COSTS_FILE) -> list[ComponentCost] | None:
    """The table's costs for `cfg`, or None when the table lacks it or was written for other sizes."""
    try:
        entry = json.loads(path.read_text()).get(cfg.name)
    except (OSError, ValueError):
        return None
    if not entry or entry.get("config_digest") != config_digest(cfg):
        return None
    return [ComponentCost(**c) for c in entry["components"]]


def component_costs(cfg: ModelConfig) -> tuple[list[ComponentCost], str]:
    """(costs, source): from the table when it matches `cfg` ("table"), else counted with torch ("counted")."""
    costs = tabled_costs(cfg)
    if costs is not None:
        return costs, "table"
    from .modules.flops import component_costs as count

    return count(cfg), "counted"


def per_frame_gflop(costs: list[ComponentCost], steps: int, window_over_chunk: float = 1.0) -> float:
    """Steady-state GFLOP per output frame: decoder + (audio + denoiser x steps) x (window / chunk), since
    the audio encoder and the denoiser run over the whole window (known prefix + new chunk)."""
    by = {c.name: c for c in costs}
    return by["vae.decoder"].gflop + (by["audio_encoder"].gflop + by["denoiser"].gflop * steps) * window_over_chunk


def write_table(path: Path = COSTS_FILE, names: tuple[str, ...] = TABLE_CONFIGS) -> Path:
    from .modules.flops import component_costs as count

    table = {}
    for name in names:
        cfg = get_config(name)
        table[name] = {"config_digest": config_digest(cfg), "components": [asdict(c) for c in count(cfg)]}
    path.write_text(json.dumps(table, indent=1) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m instructavatar.engine.costs", description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help=f"recount {', '.join(TABLE_CONFIGS)} and rewrite the table")
    args = ap.parse_args(argv)
    if args.write:
        print(write_table())
    else:
        for name in TABLE_CONFIGS:
            print(name, "table matches the config" if tabled_costs(get_config(name)) else "table is STALE")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
