#!/usr/bin/env bash
# Regenerate the reference runs (src/claimlens/reference/reference_runs.json and docs/reference_runs.md): judge every
# claim on the sources' shipped artifacts, the built-in runs, the default recipe's three seeds and (PAPER=1, when
# their runs are trained) the paper recipe's three seeds cut at 16 000 epochs, then store the verdicts.
#   scripts/reference_runs.sh            # minutes once the runs are cached (training them first: about 15 minutes
#                                        # on a 2-core CPU; the learning coefficient on the default run only)
#   PAPER=1 scripts/reference_runs.sh    # + the paper seeds (training: 30–36 minutes each on 2 cores, or on a GPU;
#                                        # the three at once on a pool of 3 one-thread processes: 2 h 1 min on 2
#                                        # cores that were also running other work)
# Run it after changing a rule: tests/test_validation.py fails while the stored references are of an older version.
set -euo pipefail
cd "$(dirname "$0")/.."
out=reports/reference
specs="$out/specs"
mkdir -p "$specs"
for seed in 1 2; do
    sed -e "s/^name = \"default\"/name = \"default_s$seed\"/" -e "s/^seed = 0/seed = $seed/" \
        fixtures/default.toml > "$specs/default_s$seed.toml"
done
judge() {  # judge LABEL GROUP ARGS…: one session; pytest exits 1 when a claim fails, a finding here, not an error
    local label=$1 group=$2; shift 2
    CI=1 python -m pytest claims/ -q -p no:cacheprovider "$@" --claims-report "$out/$label" \
        > "$out/$label.log" 2>&1 || [ $? -eq 1 ]
    reports+=("$group=$out/$label/claims.json")
}
reports=()
judge source source --run nanda2022 --run nanda2022_fractions --run zhong2023_model_a --run zhong2023_model_b \
    --run zhong2023_sweep
judge default default_seeds --run fixtures/default.toml
for seed in 1 2; do judge "default_s$seed" default_seeds --run "$specs/default_s$seed.toml" -k "not llc"; done
for name in no_weight_decay pizza clock nv_mlp mlp_sum mlp_concat induction_2l induction_1l; do
    judge "$name" builtin --run "fixtures/$name.toml" -k "not llc"
done
groups=()
if [ "${PAPER:-0}" = 1 ]; then
    for seed in 0 1 2; do
        sed -e "s/^name = \"paper\"/name = \"paper_s$seed\"/" -e "s/^seed = 0/seed = $seed/" \
            -e "s/^epochs = 40000/epochs = 16000/" -e "s/40k epochs/16k epochs/" fixtures/paper.toml \
            > "$specs/paper_s$seed.toml"
        judge "paper_s$seed" paper_seeds --run "$specs/paper_s$seed.toml" -k "not llc"
    done
    groups=(--groups "paper_seeds=16 000 epochs of the 40 000-epoch recipe")
fi
python scripts/reference_runs.py "${reports[@]}" "${groups[@]}" \
    --note "The learning-coefficient claims on the default run only; the paper seeds $([ "${PAPER:-0}" = 1 ] && echo 'at 16 000 epochs' || echo 'not included (PAPER=0)')."
