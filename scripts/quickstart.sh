#!/usr/bin/env bash
# Train on the embedded numbers corpus, measure test accuracy, translate a few examples.
#   bash scripts/quickstart.sh [MODEL_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
model_dir=${1:-models/numbers}

start=$(date +%s)
seq2seq-shared train data/train.en data/train.de --valid data/dev.en data/dev.de \
    --config data/numbers.toml --model-dir "$model_dir" --overwrite
echo "training took $(( $(date +%s) - start )) s"

seq2seq-shared evaluate --model-dir "$model_dir" --source data/test.en --reference data/test.de

printf '%s\n' "three hundred twenty-one" "seventy thousand one" "nineteen" \
    "one hundred one thousand eleven" "eight hundred eighty-eight thousand eight hundred eighty-eight" \
    > "$model_dir/examples.en"
seq2seq-shared translate --model-dir "$model_dir" -i "$model_dir/examples.en" \
    | paste -d '\t' "$model_dir/examples.en" - | sed 's/\t/  ->  /'
