#!/usr/bin/env bash
# The course's four full-length runs in one call on a lent GPU: `factlab reproduce --recipe course` for vanilla,
# synthesizer, perceiver and rope side by side (four processes on one GPU; the course recipe trains in fp32, as
# the course's code), each with --analyze and --resume. A watchdog sends SIGTERM to every run still going after
# DEADLINE seconds, so the call ends with each run's state saved and its results.json as far as it got. Then
# every run folder's small outputs (`factlab export`: results.json, predictions, analyses, thinned curves, never
# checkpoints) and its log are packed into OUT/course-runs.tgz, with the GPU's name and the wall-clock times.
#
#   bash benchmarks/course_gpu.sh DATA_DIR RUNS_DIR OUT_DIR [DEADLINE_S]
#
# DATA_DIR holds the course's files (wiki.txt, birth_places_train.tsv, birth_dev.tsv, birth_test_inputs.tsv);
# a device machine sees only the repository, so copy them into a folder that git ignores and carry it. The
# environment may set PYTHON (default python3), DEVICE (default cuda), VARIANTS (default all four, e.g.
# VARIANTS="rope synthesizer" for the ones still missing: fewer processes share the GPU) and EXTRA (more reproduce
# options, e.g. --override settings for a rehearsal on a CPU with the synthetic corpus). Nothing is installed: the
# package is read from src/ (torch, safetensors, tqdm, numpy and matplotlib must be there).
set -uo pipefail
if [ $# -lt 3 ]; then
    echo "usage: bash benchmarks/course_gpu.sh DATA_DIR RUNS_DIR OUT_DIR [DEADLINE_S]" >&2
    exit 2
fi
data=$1 runs=$2 out=$3 deadline=${4:-480}
python=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$runs" "$out" || exit 2
{ date -u +%FT%TZ
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"
  "$python" -c "import torch; print('torch', torch.__version__)"; } > "$runs/machine.txt"

read -r -a variants <<< "${VARIANTS:-vanilla synthesizer perceiver rope}"
started=$SECONDS
pids=()
for variant in "${variants[@]}"; do
    # shellcheck disable=SC2086  # EXTRA is a list of options
    "$python" -m factlab.cli reproduce --data_dir "$data" --out_dir "$runs/course-$variant" --recipe course \
        --variants "$variant" --analyze --seed 0 --device "${DEVICE:-cuda}" --resume ${EXTRA:-} \
        >> "$runs/course-$variant.log" 2>&1 &
    pids+=($!)
done
while [ $((SECONDS - started)) -lt "$deadline" ]; do
    running=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
    [ "$running" = 0 ] && break
    sleep 5
done
kill -TERM "${pids[@]}" 2>/dev/null  # a run still going saves its state and exits 143
for i in "${!pids[@]}"; do
    wait "${pids[$i]}"
    echo "course-${variants[$i]}: exit $?" >> "$runs/machine.txt"
done
echo "wall-clock: $((SECONDS - started)) s (deadline $deadline s)" >> "$runs/machine.txt"

stage=$(mktemp -d)
cp "$runs/machine.txt" "$stage/"
for variant in "${variants[@]}"; do
    if [ -f "$runs/course-$variant/results.json" ]; then
        "$python" -m factlab.cli export "$runs/course-$variant" "$stage/course-$variant" > /dev/null
    fi
    mkdir -p "$stage/course-$variant"
    cp "$runs/course-$variant.log" "$stage/course-$variant/reproduce.log" 2>/dev/null
done
tar -czf "$out/course-runs.tgz" -C "$stage" . && rm -rf "$stage"
cat "$runs/machine.txt"
