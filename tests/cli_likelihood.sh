#!/usr/bin/env bash
# eval --metric nll --likelihood bound|ode|both: the ODE likelihood from the command line. Its
# JSON fields are consistent (bits per dimension from nats, nats from the prior and delta terms
# and the log-determinant), the bound's fields are unchanged, Hutchinson's estimate agrees with
# the exact trace within its standard error, and bad input is refused with one clear message.
set -u
bin=$1
name=cli_likelihood
source "$(dirname "$0")/shell_checks.sh"
command -v jq >/dev/null || { echo "FAIL: jq is needed"; exit 1; }
export OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1

check "train" "$bin" train --data swissroll --n-data 4000 --steps 300 --batch 128 --hidden 32 \
    --layers 2 --out "$dir/m" --quiet --threads 2
nll=(eval --metric nll --model "$dir/m" --data swissroll --n 60 --threads 2 --quiet --json)

# the bound alone keeps its fields and has no ODE fields
check "bound" "$bin" "${nll[@]}"
cp "$dir/out" "$dir/bound.json"
holds "bound: fields" "$dir/bound.json" \
    '.likelihood == "bound" and (.nats | finite) and (.bits_per_dim | finite) and
     (has("ode_nats") | not)'

# the ODE likelihood alone, exact trace: nats = -(prior + delta) + log-det; bits = nats / (2 ln 2)
check "ode" "$bin" "${nll[@]}" --likelihood ode
cp "$dir/out" "$dir/ode.json"
holds "ode: fields and identities" "$dir/ode.json" \
    '.likelihood == "ode" and (has("nats") | not) and .ode_trace == "exact" and
     .ode_probes == 0 and .ode_products == "backward" and .ode_rtol == 1e-5 and
     .ode_atol == 1e-5 and (.ode_nats | finite) and .ode_nats_se > 0 and
     (.ode_nats - (-(.ode_prior_logp_nats + .ode_delta_nats) + .ode_log_det_nats) | fabs) < 1e-9 and
     (.ode_bits_per_dim - .ode_nats / (2 * (2 | log)) | fabs) < 1e-9 and .ode_log_det_nats != 0 and
     .ode_score_evals >= 8 and ((.ode_score_evals - 2) % 6 == 0)'

# both: the same two figures as the separate runs (same seed, same points)
check "both" "$bin" "${nll[@]}" --likelihood both
cp "$dir/out" "$dir/both.json"
bound_nats=$(jq .nats "$dir/bound.json"); ode_nats=$(jq .ode_nats "$dir/ode.json")
holds "both: the bound's and the ODE's figures" "$dir/both.json" \
    ".likelihood == \"both\" and .nats == $bound_nats and .ode_nats == $ode_nats and
     (.ode_minus_bound_nats - (.ode_nats - .nats) | fabs) < 1e-9 and .ode_minus_bound_nats_se > 0"

# a tighter tolerance: more evaluations, a value within 0.01 nats (the error at 1e-5 is a few 1e-5)
check "ode, tighter" "$bin" "${nll[@]}" --likelihood ode --ode-rtol 1e-7 --ode-atol 1e-7
holds "ode, tighter: more evaluations, the same value" "$dir/out" \
    ".ode_score_evals > $(jq .ode_score_evals "$dir/ode.json") and
     (.ode_nats - $ode_nats | fabs) < 0.01 and .ode_rtol == 1e-7"

# Hutchinson: the estimate is within 4 of its standard errors (plus the exact run's) of the
# exact trace's value on the same points
for probe in rademacher gaussian; do
    check "hutchinson $probe" "$bin" "${nll[@]}" --likelihood ode --hutchinson 4 --probe "$probe"
    holds "hutchinson $probe: near the exact trace" "$dir/out" \
        ".ode_trace == \"$probe\" and .ode_probes == 4 and (.ode_nats | finite) and
         (.ode_nats - $ode_nats | fabs) < 4 * (.ode_nats_se + $(jq .ode_nats_se "$dir/ode.json"))"
done

# the text output names both
check "text" "$bin" eval --metric nll --model "$dir/m" --data swissroll --n 20 --threads 2 \
    --quiet --likelihood both
checks=$((checks + 1))
grep -q "bound" "$dir/out" && grep -q "probability-flow ODE" "$dir/out" &&
    grep -q "ODE - bound on the same examples" "$dir/out" ||
    { echo "FAIL: text output: $(cat "$dir/out")"; fails=$((fails + 1)); }

# images (Fashion-MNIST's test split): Hutchinson with 1 probe by default, score_sde's
# dequantisation: log-det 784 log 128 and the bits per dimension the model's plus 7
fmnist=/usr/share/datasets/fashion-mnist
if [ ! -f "$fmnist/t10k-images-idx3-ubyte.gz" ]; then
    echo "FAIL: $fmnist is missing: install the Debian package dataset-fashion-mnist"
    fails=$((fails + 1))
else
    cat > "$dir/small.json" <<'JSON'
{"sample_size": 28, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16],
 "layers_per_block": 1, "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
 "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 4, "attention_head_dim": 8}
JSON
    check "train an image model" "$bin" train --model "$dir/small.json" --T 1000 --batch 4 \
        --threads 2 --quiet --data fashion-mnist --steps 2 --out "$dir/img"
    check "image ode" "$bin" eval --metric nll --model "$dir/img" --n 2 --likelihood ode \
        --ode-rtol 1e-3 --ode-atol 1e-3 --threads 2 --quiet --json
    holds "image ode: dequantised bits per dimension" "$dir/out" \
        '.dim == 784 and .ode_trace == "rademacher" and .ode_probes == 1 and
         (.ode_log_det_nats - 784 * (128 | log) | fabs) < 1e-6 and (.ode_nats | finite) and
         (.ode_bits_per_dim - ((.ode_nats - .ode_log_det_nats) / (784 * (2 | log)) + 7) | fabs)
         < 1e-9'
fi

# bad input: one clear message, non-zero exit
m=(eval --metric nll --model "$dir/m" --n 5 --quiet)
expect_error "allowed bound, ode, both" "$bin" "${m[@]}" --likelihood exact
expect_error "needs N >= 1 probes" "$bin" "${m[@]}" --likelihood ode --hutchinson 0
expect_error "tolerances must be > 0" "$bin" "${m[@]}" --likelihood ode --ode-rtol 0
expect_error "tolerances must be > 0" "$bin" "${m[@]}" --likelihood both --ode-atol -1e-5
expect_error "allowed rademacher, gaussian" "$bin" "${m[@]}" --likelihood ode --hutchinson 2 \
    --probe normal
expect_error "VP SDE only (asked: ve; allowed: vp)" "$bin" "${m[@]}" --likelihood ode --sde ve
expect_error "allowed: vp" "$bin" "${m[@]}" --likelihood ode --sde subvp
expect_error "add --likelihood ode or both" "$bin" "${m[@]}" --hutchinson 2
expect_error "add --likelihood ode or both" "$bin" "${m[@]}" --ode-rtol 1e-3
for f in err; do
    checks=$((checks + 1))
    [ "$(grep -c "error" "$dir/$f")" -eq 1 ] ||
        { echo "FAIL: more than one error line: $(cat "$dir/$f")"; fails=$((fails + 1)); }
done
finish
