"""A run of the source's size, judged end to end: wall time, time per checkpoint and peak memory.

Nanda et al. (2023) save 400–500 checkpoints of a p = 113 transformer (d_model 128, 4 heads, d_mlp 512). This
benchmark builds such a run with 100 and with 400 checkpoints in a temporary folder, in the folder importer's format
(a ``spec.toml`` and one ``epoch_N.safetensors`` per checkpoint), imports it (``claimlens import``), and judges it
with ``pytest claims/ --run RUN -k "not llc"`` in a subprocess, with an empty analysis cache of its own (every
analysis is computed, none read from the shared cache). Printed per size: wall time of the pytest process, time
per checkpoint, its CPU time and its peak resident memory (``ru_maxrss`` of the pytest process and its children,
read with ``os.wait4``); last the line ``scale: 400 checkpoints A s, peak B GB; 100 checkpoints C s, peak D GB``.

The weights are any weights of the right shapes (the claims' verdicts do not matter here): checkpoint ``i`` of ``n``
interpolates linearly between two seeded initialisations of the model, the second scaled ×3, so every checkpoint
differs.

    python bench/bench_scale.py                   # 100 and 400 checkpoints
    python bench/bench_scale.py --sizes 20 40     # a quick check
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SPEC = """name = "scale"
description = "bench/bench_scale.py: p=113, d_model 128, 4 heads, d_mlp 512; weights interpolated between two inits"

[task]
p = 113
frac_train = 0.3
split_seed = 0

[model]
kind = "transformer"
d_model = 128
n_heads = 4
d_head = 32
d_mlp = 512
act_fn = "relu"

[train]
epochs = {epochs}
checkpoint_every = 100
"""


def build_folder(folder: Path, n_checkpoints: int) -> Path:
    """A folder of ``n_checkpoints`` checkpoints (epochs 0, 100, …) and its ``spec.toml``, for the folder importer."""
    import torch
    from safetensors.torch import save_file

    from claimlens.config import RunSpec
    from claimlens.models import init_params

    folder.mkdir(parents=True)
    (folder / "spec.toml").write_text(SPEC.format(epochs=100 * (n_checkpoints - 1)))
    spec = RunSpec.from_toml(folder / "spec.toml")
    start = init_params(spec.model, spec.task.p, seed=0)
    end = {k: 3 * v for k, v in init_params(spec.model, spec.task.p, seed=1).items()}
    for i in range(n_checkpoints):
        t = i / max(n_checkpoints - 1, 1)
        params = {k: ((1 - t) * start[k] + t * end[k]).contiguous() for k in start}
        save_file(params, str(folder / f"epoch_{100 * i}.safetensors"))
    del torch
    return folder


def judge(run_dir: Path, cache: Path, report: Path) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in bytes, CPU seconds) of ``pytest claims/ --run run_dir -k "not llc"``."""
    env = {**os.environ, "CLAIMLENS_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "claims"), "--run", str(run_dir), "-k", "not llc", "-q",
           "-p", "no:cacheprovider", "--claims-report", str(report)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # the rusage of this child and its waited-for descendants alone
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    tail = out.decode(errors="replace").strip().splitlines()[-1:] or [""]
    print(f"  pytest: {tail[0]}")
    if proc.returncode not in (0, 1):  # 1: some claims fail, which this benchmark does not judge
        print(out.decode(errors="replace")[-3000:])
        raise SystemExit(f"pytest exited with {proc.returncode}")
    return wall, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime  # ru_maxrss is in KiB on Linux


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 400], help="numbers of checkpoints (default 100 400)")
    args = ap.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="claimlens-bench-scale-") as tmp:
        tmp = Path(tmp)
        for n in args.sizes:
            folder = build_folder(tmp / f"folder{n}", n)
            run_dir = tmp / f"run{n}"
            subprocess.run([sys.executable, "-m", "claimlens.cli", "import", str(folder), "--out", str(run_dir),
                            "--quiet"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                           env={**os.environ, "CLAIMLENS_CACHE_DIR": str(tmp / f"import-cache{n}")})
            print(f"{n} checkpoints (p = 113, d_model 128, d_mlp 512):")
            wall, peak, cpu = judge(run_dir, tmp / f"cache{n}", tmp / f"report{n}")
            results[n] = (wall, peak)
            print(f"  wall {wall:.1f} s, {wall / n:.3f} s per checkpoint, peak RSS {peak / 1e9:.2f} GB "
                  f"(CPU {cpu:.1f} s, {cpu / n:.3f} s per checkpoint: less sensitive to a loaded machine)")
    parts = [f"{n} checkpoints {results[n][0]:.0f} s, peak {results[n][1] / 1e9:.2f} GB"
             for n in sorted(results, reverse=True)]
    print("scale: " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
