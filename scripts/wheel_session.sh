#!/usr/bin/env bash
# claimlens as a user installs it: build the wheel, install it alone into a fresh virtual environment (no system
# packages, no clone on the path) and, from an empty project directory, judge runs with the claims the wheel carries:
#   1. pytest --pyargs claimlens.claims --run tiny.toml   a small spec of the user's, trained on first use
#   2. pytest --pyargs claimlens.claims --run default     a built-in run by name (trained on first use, else cached)
#   3. pytest claims/ --run tiny.toml                     the user's own claims folder, on the plugin's fixtures
#   4. --run hf://… and claimlens import hf://…           a run in the Hugging Face cache, offline (HF_HUB_OFFLINE=1)
# Each report must land in ./reports/ of the project directory. CI runs it after the test suite (.ci/run); by hand:
#   scripts/wheel_session.sh [WORKDIR]      (default: a new temporary directory, removed at the end)
# The venv takes torch 2.13.0 first (the local CPU build, as in the README), then the wheel and its declared
# dependencies from the package index. CLAIMLENS_CACHE_DIR is honoured (CI's cache already holds `default`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-}"
if [ -z "$work" ]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
work="$(cd "$work" && pwd)"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
step() { printf '\n== wheel session: %s\n' "$*"; }

step "build the wheel"
python3 -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
# from a copy of what the build reads, so that nothing stale (a build/ folder of an earlier build) enters the wheel
mkdir -p "$work/tree"
cp -R "$root/pyproject.toml" "$root/setup.py" "$root/README.md" "$root/src" "$root/claims" "$root/fixtures" "$work/tree/"
"$py" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$work/tree"
wheel="$(ls "$work"/dist/claimlens-*.whl)"
"$py" - "$wheel" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
need = ["claimlens/claims/test_grokking.py", "claimlens/fixtures/default.toml", "claimlens/fixtures/sweeps/llc_p.toml",
        "claimlens/reference/nanda2022/index.toml", "claimlens/reference/zhong2023/LICENSE.pizza",
        "claimlens/reference/zhong2023/models/model_p99zdpze5l.pt", "claimlens/report/schema.json",
        "claimlens/reference/reference_runs.json"]
missing = [n for n in need if n not in names]
assert not missing, f"the wheel lacks {missing}"
print(f"{sys.argv[1].rsplit('/', 1)[-1]}: {len(names)} files, claims, specs and reference data included")
EOF

step "install it into a fresh virtual environment"
"$py" -m pip install --quiet torch==2.13.0
"$py" -m pip install --quiet "$wheel"
# From here on, only the venv's commands; the working directory is an empty project outside the clone.
export PATH="$work/venv/bin:$PATH"
unset PYTHONPATH VIRTUAL_ENV
project="$work/project"
rm -rf "$project" && mkdir -p "$project" && cd "$project"
python - "$root" <<'EOF'
import sys
import claimlens, claimlens.claims
from claimlens.config import FIXTURES
where = claimlens.__file__
assert sys.argv[1] not in where and "site-packages" in where, f"claimlens imported from {where}, not the wheel"
assert (FIXTURES / "default.toml").is_file(), FIXTURES
print(f"claimlens {claimlens.__version__} from {where}; built-in specs in {FIXTURES}")
EOF

# pytest's exit status 1 is a claim that failed on the run (a finding); 2-5 are not a judged session.
judged() {
    local status=$1 report=$2
    if [ "$status" -gt 1 ]; then echo "wheel session: pytest exited $status" >&2; exit 1; fi
    python - "$report" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
outcomes = [r["outcome"] for r in doc["records"]]
assert outcomes and any(o in ("passed", "failed") for o in outcomes), f"nothing judged in {sys.argv[1]}"
print(f"{sys.argv[1]}: {len(outcomes)} records ({', '.join(f'{outcomes.count(o)} {o}' for o in sorted(set(outcomes)))})"
      f" on runs {[r['label'] for r in doc['runs']]}")
EOF
}

cat > tiny.toml <<'EOF'
name = "tiny"
description = "a p = 23 transformer that trains in seconds: a smoke test of an installed claimlens"
[task]
p = 23
frac_train = 0.5
split_seed = 1
[model]
kind = "transformer"
d_model = 32
n_heads = 4
d_head = 8
d_mlp = 64
[train]
epochs = 120
checkpoint_every = 10
lr = 3e-3
seed = 7
EOF

step "pytest --pyargs claimlens.claims --run tiny.toml"
set +e
pytest --pyargs claimlens.claims --run tiny.toml -q -p no:cacheprovider | tail -n 4
status=${PIPESTATUS[0]}
set -e
judged "$status" reports/claims.json

step "pytest --pyargs claimlens.claims --run default (a built-in run by name)"
set +e
pytest --pyargs claimlens.claims --run default -q -p no:cacheprovider -k "grokking_delayed or trig_loss_all_equals_train" \
    --claims-report reports/default | tail -n 2
status=${PIPESTATUS[0]}
set -e
judged "$status" reports/default/claims.json

step "pytest claims/ (the project's own claims folder, on claimlens's fixtures)"
mkdir -p claims
cat > claims/test_mine.py <<'EOF'
import pytest

from claimlens import ClaimSpec, Threshold, Verdict

MEMORISES = ClaimSpec(id="memorises_the_training_set", statement="train accuracy reaches 0.99",
                      source="my notebook", thresholds={"min_acc": Threshold(0.99, "ours")})


@MEMORISES.rule
def memorises(train_acc, th):
    v = Verdict()
    v.add_series(train_acc)
    v.check("train accuracy at the last epoch", train_acc.values[-1], ">=", th["min_acc"],
            epoch=train_acc.epochs[-1])
    return v


@pytest.mark.claim(MEMORISES)
def test_memorises(training_log, claim):
    claim.judge(training_log["train_acc"])
EOF
set +e
pytest claims/ --run tiny.toml -q -p no:cacheprovider --claims-report reports/mine | tail -n 2
status=${PIPESTATUS[0]}
set -e
[ "$status" -eq 0 ] || { echo "wheel session: the project's own claim exited $status, not 0" >&2; exit 1; }
judged 0 reports/mine/claims.json

step "a run in the Hugging Face cache, offline: --run hf://… and claimlens import hf://…"
export HF_HUB_CACHE="$work/hf-cache" HF_HOME="$work/hf-home" HF_HUB_OFFLINE=1
python - <<'EOF'
# An ARENA-style full_run_data.pth of the tiny run, written into the Hub cache as huggingface_hub lays it out after a
# download (blobs/<sha256>, snapshots/<commit>/<file> → the blob, refs/main → the commit).
import hashlib, io, os, pathlib
import torch
from claimlens.builtin import cached_run_path
from claimlens.config import RunSpec
from claimlens.runs.store import Run

run = Run.open(cached_run_path(RunSpec.from_toml("tiny.toml")))
buf = io.BytesIO()
torch.save({"state_dicts": [run.checkpoint(e) for e in run.epochs], "epochs": run.epochs,
            "config": {"p": 23, "d_model": 32, "num_heads": 4, "d_head": 8, "d_mlp": 64, "act_type": "ReLU",
                       "frac_train": 0.5, "seed": 1, "lr": 3e-3, "weight_decay": 1.0}}, buf)
data, commit = buf.getvalue(), "0123456789abcdef0123456789abcdef01234567"
repo = pathlib.Path(os.environ["HF_HUB_CACHE"]) / "models--someone--tiny_grokking"
blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
blob.parent.mkdir(parents=True)
blob.write_bytes(data)
pointer = repo / "snapshots" / commit / "full_run_data.pth"
pointer.parent.mkdir(parents=True)
pointer.symlink_to(os.path.relpath(blob, pointer.parent))
(repo / "refs").mkdir()
(repo / "refs" / "main").write_text(commit)
print(f"hf://someone/tiny_grokking/full_run_data.pth in {repo}")
EOF
set +e
pytest --pyargs claimlens.claims --run hf://someone/tiny_grokking/full_run_data.pth -q -p no:cacheprovider \
    -k "grokking_delayed or trig_loss_all_equals_train" --claims-report reports/hub | tail -n 2
status=${PIPESTATUS[0]}
set -e
judged "$status" reports/hub/claims.json
claimlens import hf://someone/tiny_grokking/full_run_data.pth --out runs/tiny_grokking --quiet | sed -n 1p
claimlens info runs/tiny_grokking | grep '^hub'
set +e
pytest --pyargs claimlens.claims --run hf://someone/misspelt/full_run_data.pth -q -p no:cacheprovider 2>&1 | grep -- '--run hf://'
status=${PIPESTATUS[0]}
set -e
[ "$status" -eq 4 ] || { echo "wheel session: an uncached hf:// reference exited $status, not 4" >&2; exit 1; }

step "done: reports in $project/reports"
ls reports
