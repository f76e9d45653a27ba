#!/usr/bin/env bash
# Pack what bench/gpu_fast.sh needs on a GPU machine that has no network into .gpu/ (git-ignored):
#   .gpu/wheels/  the Python packages that machine lacks (bench/gpu_fast_wheels.txt), as
#                 CPython 3.12 manylinux wheels; connection_pool has no wheel, so one is built
#   .gpu/tgs.tar  the Kaggle-layout data: all labelled tiles (train.csv, depths.csv, the train
#                 images; masks come from train.csv's RLE) and the first TEST_TILES ids of
#                 sample_submission.csv with their images
# Usage: bash bench/gpu_fast_pack.sh DATA_DIR [TEST_TILES=4000]. The machine takes at most
# 64 MiB with the repository; 4,000 test tiles leave room for the repository and the wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: bench/gpu_fast_pack.sh DATA_DIR [TEST_TILES]}
TEST_TILES=${2:-4000}
rm -rf .gpu && mkdir -p .gpu/wheels .gpu/tgs/train/images .gpu/tgs/test/images
grep -v '^#' bench/gpu_fast_wheels.txt | grep . | while read -r spec; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .gpu/wheels "$spec" \
    || python3 -m pip wheel -q --no-deps -w .gpu/wheels "$spec"
done
cp "$DATA/train.csv" "$DATA/depths.csv" .gpu/tgs/
cp "$DATA"/train/images/*.png .gpu/tgs/train/images/
head -n $((TEST_TILES + 1)) "$DATA/sample_submission.csv" > .gpu/tgs/sample_submission.csv
tail -n +2 .gpu/tgs/sample_submission.csv | cut -d, -f1 \
  | xargs -I{} cp "$DATA/test/images/{}.png" .gpu/tgs/test/images/
tar -cf .gpu/tgs.tar -C .gpu tgs && rm -rf .gpu/tgs
du -sh --apparent-size .gpu/wheels .gpu/tgs.tar
