#!/usr/bin/env bash
# One prepared GPU session, in two steps that each fit a short lease of a CUDA machine:
#
#   bash benchmarks/gpu_session.sh check              # versions, SCE's GPU backward checked, a 3-epoch ML-1M GPU
#                                                     # training, a 2-epoch FSDP2 training, the 20-epoch timing
#   bash benchmarks/gpu_session.sh grid SECONDS N [GRID ...]   # N runners over the grids (default ml-1m) on the GPU
#
# `check` writes benchmarks/results/performance.json's `gpu` section (performance.py --sections gpu) and reports the
# seconds per epoch of a real train.py run (evaluation and checkpointing included), which sizes `grid`. `grid` runs
# `reproduce.py --grid GRID... --device cuda` in N processes (a run held by one is skipped by the others) until
# SECONDS have passed, then copies the records and logs out. GPU records are separate runs (own ids and table rows).
# A run unfinished at the deadline is lost with the machine: give the grid runs that fit (an ML-1M run took 4 to
# 8 min with 16 at once on one H200).
#
# Where the machine lacks the pinned packages, put their wheels in .whl/ (installed to /tmp/site, first on the
# path); ML-1M is read from $BTSR_DATA_ROOT (default ./shared/data, a copy made for the machine: never committed).
# Outputs are copied to $OUT when it is set (the lease's return folder).
set -u
mode=${1:-check}
out=${OUT:-/tmp/gpu_session_out}
mkdir -p "$out"
started=$(date +%s)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export BTSR_DATA_ROOT=${BTSR_DATA_ROOT:-$PWD/shared/data} BTSR_REPRODUCE_WORK=${BTSR_REPRODUCE_WORK:-/tmp/btsr-reproduce}
if [ -d .whl ] && [ ! -d /tmp/site ]; then  # installed aside, then renamed: a failed install is not reused
    rm -rf /tmp/site.partial
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site.partial \
        .whl/*.whl && mv /tmp/site.partial /tmp/site || { echo "wheel install failed"; exit 2; }
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site
ml1m="${BTSR_DATA_ROOT#"$PWD"/}/ml-1m/ml-1m.txt.gz"  # relative where it can be: it is recorded in the command
[ -f "$ml1m" ] || { echo "ML-1M not found at $ml1m"; exit 2; }

if [ "$mode" = check ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch, transformers, datasets, accelerate, evaluate, huggingface_hub as h, pyarrow, numpy
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))
print('transformers', transformers.__version__, 'datasets', datasets.__version__, 'accelerate', accelerate.__version__,
      'evaluate', evaluate.__version__, 'hub', h.__version__, 'pyarrow', pyarrow.__version__, 'numpy', numpy.__version__)" \
        || exit 3
    # SCE's batched backward (the path every non-CPU device takes) against the CPU's per-bucket one.
    timeout 120 python3 benchmarks/gpu_checks.py --device cuda > "$out/gpu_checks.log" 2>&1
    rc=$?
    cat "$out/gpu_checks.log"
    [ $rc -eq 0 ] || { echo "SCE's GPU backward check failed (exit $rc)"; exit 6; }
    # A real train.py run on the GPU (Trainer, evaluation every epoch, checkpoints): fails fast if anything is off,
    # and its seconds per epoch size the grid step.
    timeout 240 python3 train.py --dataset ml-1m --data_root "$BTSR_DATA_ROOT" --split leave_one_out --loss_type ce \
        --bt_alpha 0.2 --bt_lambda 0.05 --dropout 0.1 --per_device_train_batch_size 256 --num_train_epochs 3 \
        --output_dir /tmp/check-btsr --seed 0 > "$out/check_train.log" 2>&1
    rc=$?
    tail -c 1500 "$out/check_train.log"
    [ $rc -eq 0 ] || { echo "train.py on the GPU failed (exit $rc)"; exit 4; }
    python3 -c "import json; r = json.load(open('/tmp/check-btsr/all_results.json'))
print('train.py BT-SR on GPU: %.2f s/epoch over %s epochs (evaluation and checkpoints included)'
      % (r['train_seconds'] / r['epochs'], r['epochs']))"
    # The FSDP2 path through accelerate and the Trainer (accelerate runs FSDP on GPUs only): one process, so the item
    # table is a one-shard DTensor read shard by shard; evaluation, checkpoints and the final save gather it.
    timeout 240 accelerate launch --use_fsdp --fsdp_version 2 --num_processes 1 \
        --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP --fsdp_state_dict_type FULL_STATE_DICT \
        train.py --dataset ml-1m --data_root "$BTSR_DATA_ROOT" --loss_type ce --bt_alpha 0.2 --num_train_epochs 2 \
        --output_dir /tmp/check-fsdp --seed 0 > "$out/check_fsdp.log" 2>&1
    rc=$?
    tail -c 1500 "$out/check_fsdp.log"
    [ $rc -eq 0 ] || { echo "train.py under FSDP2 failed (exit $rc)"; exit 7; }
    python3 -c "from transformers import AutoModel; m = AutoModel.from_pretrained('/tmp/check-fsdp', trust_remote_code=True)
print('FSDP2 folder loads:', type(m).__name__, tuple(m.item_embeddings.weight.shape))" || exit 7
    timeout 300 python3 benchmarks/performance.py --sections gpu --data "$ml1m" || exit 5
    cp benchmarks/results/performance.json benchmarks/results/performance.md "$out/"
    echo "check done in $(( $(date +%s) - started )) s"
    exit 0
fi

if [ "$mode" = grid ]; then
    seconds=${2:-420}
    runners=${3:-8}
    shift $(( $# < 3 ? $# : 3 ))
    grids=${*:-ml-1m}
    # Many small processes share the GPU better through MPS; kept only if a CUDA call works through it.
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    if command -v nvidia-cuda-mps-control > /dev/null && nvidia-cuda-mps-control -d \
        && timeout 60 python3 -c "import torch; assert torch.ones(2, device='cuda').sum().item() == 2"; then
        echo "MPS on"
    else
        echo quit | timeout 10 nvidia-cuda-mps-control 2> /dev/null
        unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
        echo "MPS off"
    fi
    # One deadline for every runner, early enough to stop the trainings (SIGTERM) and copy the results out by
    # SECONDS; whatever still runs 30 s after it is killed.
    deadline=$(( started + seconds - 50 ))
    echo "runners: $runners over grids $grids, until $(( deadline - started )) s"
    for i in $(seq "$runners"); do
        budget_min=$(python3 -c "print(max(0.5, ($deadline - $(date +%s)) / 60))")
        python3 benchmarks/reproduce.py --grid $grids --device cuda --threads 1 --time_budget_min "$budget_min" \
            > "/tmp/runner-$i.log" 2>&1 &
        sleep 2  # each runner takes the next free run
    done
    reported=$(date +%s)
    while [ -n "$(jobs -r)" ]; do
        sleep 10
        now=$(date +%s)
        if [ $(( now - reported )) -ge 60 ]; then
            reported=$now
            echo "$(( now - started )) s: $(python3 -c "import json; print(len(json.load(open('benchmarks/results/accuracy.json'))))") records; epochs:" \
                "$(for f in "$BTSR_REPRODUCE_WORK"/*/train.log; do printf '%s=%s ' "$(basename "$(dirname "$f")" | sed 's/-leave_one_out-/:/; s/-temporal-/:/; s/-cuda-.*//')" "$(grep -c "'eval_hr@10'" "$f")"; done)"
        fi
        if [ "$now" -gt $(( deadline + 30 )) ]; then
            echo "runners still alive 30 s after the deadline: killed"
            kill -KILL $(jobs -p) 2> /dev/null
            pkill -KILL -f -- "--output_dir $BTSR_REPRODUCE_WORK/"  # their trainings, nothing else
            break
        fi
    done
    wait
    cp benchmarks/results/accuracy.json "$out/"
    tar czf "$out/logs.tgz" /tmp/runner-*.log "$BTSR_REPRODUCE_WORK"/*/train.log 2> /dev/null
    cat /tmp/runner-*.log | grep -v "^ *skipped" | sort | uniq -c | sort -rn | head -40
    echo "grid done in $(( $(date +%s) - started )) s"
    exit 0
fi
echo "usage: $0 check | grid SECONDS RUNNERS [GRID ...]"
exit 1
