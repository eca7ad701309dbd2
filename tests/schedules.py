"""A run on other checkpoint schedules: the same weights, saved less often (issue: a verdict must not depend on how
often the user saved, beyond what the checkpoints can resolve). Each subsampled run is made as a user would make it
— a folder of the chosen checkpoints and the run's spec, through ``claimlens import`` — so its log holds the losses
at its checkpoint epochs only."""

from __future__ import annotations

import math
from pathlib import Path


def schedules(epochs: list[int]) -> dict[str, list[int]]:
    """Named subsets of a run's checkpoint epochs (the first and last always kept): ``every_5`` (every 5th),
    ``every_10``, ``log`` (about log-spaced: dense early, sparse late), ``late`` (sparse early, dense late),
    ``irregular`` (a fixed pseudo-random third)."""
    n = len(epochs)
    keep = {
        "every_5": list(range(0, n, 5)),
        "every_10": list(range(0, n, 10)),
        "log": sorted({0, *(min(n - 1, round(math.expm1(i * math.log(n) / 20))) for i in range(21))}),
        "late": sorted({*range(0, n // 2, 8), *range(n // 2, n, 2)}),
        "irregular": [i for i in range(n) if (i * 7919) % 3 == 0],
    }
    return {name: sorted({epochs[i] for i in idx} | {epochs[0], epochs[-1]}) for name, idx in keep.items()}


def subsample(run, epochs: list[int], out: Path):
    """Import the checkpoints of ``run`` at ``epochs`` (a folder of safetensors files + the run's spec) into
    ``out``; returns the imported :class:`claimlens.runs.store.Run`."""
    from safetensors.torch import save_file

    from claimlens.runs.importers import import_run

    folder = out.with_name(out.name + "-ckpts")
    folder.mkdir(parents=True, exist_ok=True)
    for epoch in epochs:
        save_file({k: v.contiguous() for k, v in run.checkpoint(epoch).items()}, folder / f"epoch_{epoch}.safetensors")
    (folder / "spec.toml").write_text(_spec_toml(run.spec))
    return import_run(folder, out, name=run.name, progress=False)


def _spec_toml(spec) -> str:
    d = spec.to_dict()
    lines = [f'name = "{d["name"]}"']
    for table in ("task", "model", "train"):
        lines.append(f"[{table}]")
        for key, value in d[table].items():
            if table == "model" and key not in _MODEL_KEYS.get(d["model"]["kind"], ()):
                continue
            if table == "task" and key not in ("p", "frac_train", "split_seed", "kind"):
                continue
            lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


_MODEL_KEYS = {"transformer": ("kind", "d_model", "n_heads", "d_head", "d_mlp", "attn_bias", "unembed_bias", "attn_rate",
                               "equals_token", "causal", "act_fn", "frozen")}


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)
