#!/usr/bin/env bash
# Train the default-model recipe on a machine without network (a rented GPU, say) for a
# fixed time, and pack what it trained into files of limited size to bring back.
#
# Here, once: the corpus and tokenizer, and their smallest copy that trains (~55 MB):
#     codemt recipe default --hardware gpu --out RUN --prepare CARRY
# There, from a checkout of codemt (installed, or its dependencies importable: training
# needs torch, transformers, accelerate, tokenizers, safetensors, pyarrow, pyyaml, tqdm):
#     bash scripts/remote_recipe.sh CARRY RESULTS BUDGET [PRESET] [PART_MB]
#   BUDGET as the recipe takes it (e.g. 8m); PRESET another model size than the GPU
#   recipe's (e.g. base); PART_MB the largest file to bring back (default 15).
# Back here:
#     mkdir NEW && cat RESULTS/run.tgz.part-* | tar xzf - -C NEW
#     codemt evaluate NEW/multimode --backend torch --modes docstring --data BENCHMARK.jsonl
#   NEW/multimode holds the run's best checkpoint (its lowest docstring validation loss,
#   else its newest) in 8 bits, with the training log beside it. The same command on CARRY
#   resumes the run there while that machine is kept.
set -euo pipefail

if [[ $# -lt 3 ]]; then
    sed -n '2,21p' "$0" >&2
    exit 2
fi
carry=$1 results=$2 budget=$3 preset=${4:-} part_mb=${5:-15}
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$results"

# What the machine is, for the log: timings are only comparable on the same card.
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")'

# The recipe stops itself at the budget (the token caches' building counted in) and saves;
# a non-zero status (a stop signal: 130) still leaves a checkpoint to pack.
status=0
python3 -m codemt.cli recipe default --out "$carry" --hardware gpu --budget "$budget" --quiet \
    ${preset:+--preset "$preset"} 2>&1 | tee "$results/recipe.log" || status=$?

pack=$(mktemp -d)
python3 - "$carry" "$pack" <<'EOF'
import shutil
import sys
from pathlib import Path

from codemt.model import load_checkpoint, write_model

run, pack = Path(sys.argv[1]) / "multimode", Path(sys.argv[2]) / "multimode"
loaded = load_checkpoint(run)  # the run's best checkpoint, else its newest
write_model(loaded.model, pack / loaded.path.name, loaded.path, loaded.meta, int8=True)
for name in ("train_log.csv", "best"):
    if (run / name).is_file():
        shutil.copy2(run / name, pack / name)
print(f"packed {loaded.path.name} of {run} in 8 bits")
EOF
cp "$carry/recipe.json" "$pack/"
tar czf - -C "$pack" . | split -b "${part_mb}M" - "$results/run.tgz.part-"
rm -rf "$pack"
ls -l "$results"
exit "$status"
