#!/usr/bin/env bash
# The `fast` profile end to end on one GPU machine, as one command that stops itself in time.
#
# Here:  bash bench/gpu_fast_pack.sh ../shared/tgs      (packs .gpu/: wheels and data, < 64 MiB)
# There: bash bench/gpu_fast.sh                          (from the repository root, .gpu/ carried)
#   with the device tool: run(command="bash bench/gpu_fast.sh", carry=[".gpu"], timeout_s=600)
#
# Installs the carried wheels, unpacks the data, times one training step eager against a CUDA
# graph replay ($OUT/gpu_step.json, python -m bench gpu_step, at most 70 s), samples the GPU's
# busy share every 0.5 s, runs `snakemake --workflow-profile workflow/profiles/fast`
# (pretrained: none, bench/gpu_fast.yaml) for `submission` and `summary`, stops it after LIMIT_S
# seconds (default 440: the machine ends a command at 600 s), and writes $OUT/gpu_fast.json (python -m bench gpu_fast: wall time, rule seconds,
# busy share, train img/s per model, OOF per stage and blend, test tiles, the wall time
# extrapolated to all 18,600 test tiles) and $OUT/gpu_fast_logs.tar.gz. A stopped run keeps what
# it finished: the JSON then says which targets were not reached.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu_fast}
LIMIT_S=${LIMIT_S:-440}
mkdir -p "$OUT" /tmp/bin /tmp/tgs
START=$(date +%s.%N)
if [ -d .gpu/wheels ]; then # absent: the packages are installed already (a check on a CPU)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/wheels/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/bin:/tmp/site/bin:$PATH
ln -sf "$(command -v python3)" /tmp/bin/python # the rules call `python -m saltseg`
tar -xf .gpu/tgs.tar -C /tmp
timeout 70 python3 -m bench gpu_step --steps 60 --out "$OUT/gpu_step.json" >"$OUT/gpu_step.log" 2>&1
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits \
  -lms 500 >"$OUT/gpu_samples.csv" 2>/dev/null &
SAMPLER=$!
SNAKE_START=$(date +%s.%N)
timeout --signal=INT --kill-after=30 "$LIMIT_S" python3 -m snakemake \
  --workflow-profile workflow/profiles/fast --scheduler greedy \
  --configfile workflow/profiles/fast/recipe.yaml bench/gpu_fast.yaml \
  --config data_dir=/tmp/tgs -- submission summary >"$OUT/snakemake.log" 2>&1
RC=$?
kill "$SAMPLER" 2>/dev/null
python3 -m bench.gpu_fast --results results --samples "$OUT/gpu_samples.csv" --rc "$RC" \
  --start "$START" --dag-start "$SNAKE_START" --data-dir /tmp/tgs --out "$OUT/gpu_fast.json"
tar -czf "$OUT/gpu_fast_logs.tar.gz" results/logs results/benchmarks \
  $(find results -name history.csv -o -name cv.json) "$OUT/snakemake.log" 2>/dev/null
tail -n 25 "$OUT/snakemake.log"
cat "$OUT/gpu_step.log" "$OUT/gpu_fast.json"
