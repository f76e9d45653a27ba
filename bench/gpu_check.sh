#!/usr/bin/env bash
# One prepared check of the GPU path on the first GPU machine at hand (docs/gpu.md).
#
# Here:  bash bench/gpu_check.sh pack DATA_DIR [TEST_TILES]   (network and the data needed)
#          packs .gpu/ (git-ignored): the wheels of bench/gpu_check_wheels.txt (what the machine's
#          image lacks) and .gpu/tgs.tar (all labelled tiles, the first TEST_TILES=2500 test ids),
#          and refuses when the tree and .gpu/ together pass 60 MiB (a device call carries 64).
# There: bash bench/gpu_check.sh run
#          with the device tool: run(command="bash bench/gpu_check.sh run", carry=[".gpu"],
#          timeout_s=600). Every step runs under its own timeout, 9 minutes in all: set-up,
#          environment, the graph and GPU-slot tests, eager against graph step speed, stage 1
#          fold 0 graphs off then on, the fast profile's whole DAG cut short (5 folds, 5 jobs on
#          the GPU, pseudo-labels forced on). $OUT gets gpu_check-DATE.json and the logs' tarball.
# Anywhere: bash bench/gpu_check.sh setup
#          installs the carried wheels, puts a `python` wrapper first on PATH (the rules call
#          `python -m saltseg`) and checks that torch, saltseg and snakemake import through it.
#
# PYTHON (default: python3 on PATH) is the interpreter; GPU_CHECK_WORK (default /tmp/gpu_check)
# holds the installed wheels, the wrapper, the data and the logs; GPU_CHECK_WHEELS (default
# .gpu/wheels) the wheels to install.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-results/gpu_check}
WORK=${GPU_CHECK_WORK:-/tmp/gpu_check}
PYTHON=${PYTHON:-$(command -v python3)}
WHEELS=${GPU_CHECK_WHEELS:-.gpu/wheels}
LOGS=$WORK/logs
LIMIT_MIB=60

carried_mib() { # what a device call carries: the tree git does not ignore, and .gpu/
  local tree gpu
  tree=$(git ls-files -z -co --exclude-standard | xargs -0 stat -c %s 2>/dev/null \
    | awk '{s += $1} END {print s + 0}')
  gpu=$(du -sb .gpu 2>/dev/null | cut -f1)
  echo $(((tree + ${gpu:-0}) / 1048576))
}

pack() {
  local data=${1:?usage: bench/gpu_check.sh pack DATA_DIR [TEST_TILES]} tiles=${2:-2500}
  set -e
  rm -rf .gpu && mkdir -p .gpu/wheels .gpu/tgs/train/images .gpu/tgs/test/images
  grep -v '^#' bench/gpu_check_wheels.txt | grep . | while read -r spec; do
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .gpu/wheels "$spec" \
      || "$PYTHON" -m pip wheel -q --no-deps -w .gpu/wheels "$spec"
  done
  cp "$data/train.csv" "$data/depths.csv" .gpu/tgs/
  cp "$data"/train/images/*.png .gpu/tgs/train/images/
  head -n $((tiles + 1)) "$data/sample_submission.csv" >.gpu/tgs/sample_submission.csv
  tail -n +2 .gpu/tgs/sample_submission.csv | cut -d, -f1 \
    | xargs -I{} cp "$data/test/images/{}.png" .gpu/tgs/test/images/
  tar -cf .gpu/tgs.tar -C .gpu tgs && rm -rf .gpu/tgs
  set +e
  guard
}

guard() {
  local mib
  mib=$(carried_mib)
  if [ "$mib" -gt "$LIMIT_MIB" ]; then
    echo "gpu_check: the tree and .gpu/ come to $mib MiB, over $LIMIT_MIB (a device call" \
      "carries 64 MiB): pack fewer test tiles (bash bench/gpu_check.sh pack DATA_DIR 2000)" >&2
    return 1
  fi
  echo "gpu_check: the tree and .gpu/ come to $mib MiB (at most $LIMIT_MIB)"
}

activate() { # the wheels and the wrapper first, the checkout's package importable
  export PATH="$WORK/bin:$WORK/site/bin:$PATH"
  export PYTHONPATH="$WORK/site:$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
}

setup() {
  mkdir -p "$WORK/bin"
  if [ -d "$WHEELS" ]; then # absent: the packages are installed already
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$WORK/site" "$WHEELS"/*.whl || return 1
  fi
  # A wrapper, not a symlink: a link to a virtual environment's python from outside it starts
  # the base interpreter, without the environment's packages.
  printf '#!/bin/sh\nexec "%s" "$@"\n' "$PYTHON" >"$WORK/bin/python"
  chmod +x "$WORK/bin/python"
  activate
  python -c 'import sys, torch, saltseg, snakemake
print(f"python {sys.executable} (prefix {sys.prefix}), torch {torch.__version__},",
      f"snakemake {snakemake.__version__}, saltseg {saltseg.__file__}")'
}

step() { # step NAME SECONDS COMMAND...: the command under its timeout, logged, timed
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s.%N)
  timeout --signal=INT --kill-after=15 "$limit" "$@" >"$LOGS/$name.log" 2>&1
  rc=$?
  LAST_RC=$rc
  printf '{"step": "%s", "rc": %d, "limit_s": %d, "seconds": %s}\n' "$name" "$rc" "$limit" \
    "$(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $start}")" >>"$LOGS/steps.jsonl"
  echo "== $name: rc $rc"
  tail -n 4 "$LOGS/$name.log"
}

run() {
  local start dag_start data record sampler
  start=$(date +%s.%N)
  mkdir -p "$OUT" "$LOGS"
  rm -f "$LOGS/steps.jsonl"
  step guard 10 bash bench/gpu_check.sh guard
  step setup 60 bash bench/gpu_check.sh setup
  [ "$LAST_RC" -eq 0 ] || { cat "$LOGS/setup.log"; exit 1; }
  activate
  data=$WORK/tgs
  rm -rf "$data" && tar -xf .gpu/tgs.tar -C "$WORK"
  step env 30 python -m bench gpu_check env --out "$LOGS/env.json"
  step tests 75 python -m pytest -q -p no:cacheprovider --junitxml "$LOGS/tests.xml" \
    tests/test_graphed.py tests/test_gpus.py
  step gpu_step 60 python -m bench gpu_step --batches 32 --steps 60 --out "$LOGS/gpu_step.json"
  step fold0 100 python -m bench gpu_check fold0 --data-dir "$data" --epochs 2 \
    --out "$LOGS/fold0.json"
  python -m bench gpu_check overrides --epochs 1 --out "$WORK/dag.yaml"
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits \
    -lms 500 >"$LOGS/gpu_samples.csv" 2>/dev/null &
  sampler=$!
  dag_start=$(date +%s.%N)
  step dag "${DAG_LIMIT_S:-190}" python -m snakemake --workflow-profile workflow/profiles/fast \
    --scheduler greedy --configfile workflow/profiles/fast/recipe.yaml "$WORK/dag.yaml" \
    --config data_dir="$data" -- submission summary
  kill "$sampler" 2>/dev/null
  timeout 30 python -m bench gpu_check dag --samples "$LOGS/gpu_samples.csv" \
    --rc "$LAST_RC" --start "$start" --dag-start "$dag_start" --data-dir "$data" \
    --out "$LOGS/dag.json" >/dev/null
  record=$OUT/gpu_check-$(date +%F).json
  rm -f "$record"
  timeout 20 python -m bench gpu_check report --logs "$LOGS" --out "$record" >/dev/null
  tar -czf "$OUT/gpu_check_logs.tar.gz" -C "$WORK" logs -C "$REPO" results/logs \
    results/benchmarks $(find results -name history.csv -o -name cv.json -o -name summary.csv) \
    2>/dev/null
  cat "$record"
}

case "${1:-}" in
  pack) shift && pack "$@" ;;
  guard) guard ;;
  setup) setup ;;
  run) run ;;
  *) echo "usage: bash bench/gpu_check.sh pack DATA_DIR [TEST_TILES] | guard | setup | run" >&2 && exit 2 ;;
esac
