#!/usr/bin/env bash
# Regenerate docs/reference_runs.md: judge the claims on the source's curves, the default run and two more
# seeds, and the negative controls (PAPER=1 adds three seeds of the paper recipe cut at 16 000 epochs: 30–36
# minutes of training each on a 2-core CPU), then build the tables from the claims.json files.
#   scripts/reference_runs.sh            # about 30 minutes on a 2-core CPU (training, and the LLC at 16
#                                        # checkpoints per run), seconds once cached
#   LLC_ONLY_DEFAULT=1 scripts/reference_runs.sh   # the LLC claims on the default run only (a few minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
out=reports/reference
specs="$out/specs"
mkdir -p "$specs"
for seed in 1 2; do
    sed -e "s/^name = \"default\"/name = \"default_s$seed\"/" -e "s/^seed = 0/seed = $seed/" \
        fixtures/default.toml > "$specs/default_s$seed.toml"
done
runs=(nanda2022 fixtures/default.toml "$specs/default_s1.toml" "$specs/default_s2.toml"
      fixtures/no_weight_decay.toml fixtures/mlp_concat.toml)
if [ "${PAPER:-0}" = 1 ]; then
    for seed in 0 1 2; do
        sed -e "s/^name = \"paper\"/name = \"paper_s$seed\"/" -e "s/^seed = 0/seed = $seed/" \
            -e "s/^epochs = 40000/epochs = 16000/" -e "s/40k epochs/16k epochs/" fixtures/paper.toml \
            > "$specs/paper_s$seed.toml"
        runs+=("$specs/paper_s$seed.toml")
    done
fi
reports=()
for run in "${runs[@]}"; do
    label="$(basename "${run%.toml}")"
    select=()
    if [ "${LLC_ONLY_DEFAULT:-0}" = 1 ] && [ "$label" != default ]; then select=(-k "not llc"); fi
    # pytest exits 1 when a claim fails: that is a finding here, not an error of this script
    CI=1 python -m pytest claims/ -q -p no:cacheprovider --run "$run" --claims-report "$out/$label" "${select[@]}" \
        > "$out/$label.log" 2>&1 || [ $? -eq 1 ]
    reports+=("$out/$label/claims.json")
done
python scripts/reference_runs.py "${reports[@]}" --out docs/reference_runs.md \
    --note "Runs: ${runs[*]}; LLC claims $([ "${LLC_ONLY_DEFAULT:-0}" = 1 ] && echo 'on the default run only' || echo 'on every run')."
