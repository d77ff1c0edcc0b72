#!/usr/bin/env bash
# Train the default-model recipe on a machine without network (a rented GPU, say) for a
# fixed time, and pack what it trained into files of limited size to bring back.
#
# Here, once: the corpus and tokenizer, and their smallest copy that trains (~63 MB):
#     codemt recipe default --hardware gpu [--preset base] [--dropout 0.1] --out RUN \
#         --benchmark BENCHMARK.jsonl --prepare CARRY
# There, from a checkout of codemt (installed, or its dependencies importable: torch,
# transformers, accelerate, tokenizers, safetensors, pyarrow, pyyaml, tqdm, pathspec;
# it trains only, the export and evaluation are done back here):
#     bash scripts/remote_recipe.sh CARRY RESULTS BUDGET [PART_MB]
#   BUDGET as the recipe takes it (e.g. 8m); PART_MB the largest file to bring back
#   (default 15). The recipe, preset and dropout are the ones CARRY was prepared with.
# Back here:
#     mkdir NEW && cat RESULTS/run.tgz.part-* | tar xzf - -C NEW
#     codemt evaluate NEW/multimode --backend torch --modes docstring --data BENCHMARK.jsonl
#   NEW/multimode holds the run's best checkpoint (its lowest docstring validation loss,
#   else its newest) in 8 bits, with the training log beside it. Moved into RUN,
#   `codemt recipe default --hardware gpu [--preset/--dropout as prepared] --out RUN --finish`
#   exports and evaluates it.
#   Run again on the same machine, the same command resumes from CARRY's newest checkpoint
#   there; CARRY copied over afresh has none, and the run starts over.
set -euo pipefail

if [[ $# -lt 3 ]]; then
    sed -n '2,22p' "$0" >&2
    exit 2
fi
carry=$1 results=$2 budget=$3 part_mb=${4:-15}
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$results"
rm -f "$results"/run.tgz.part-*  # an earlier run's parts would join this one's
pack=$(mktemp -d)
trap 'rm -rf "$pack"' EXIT

# What the machine is, for the log: timings are only comparable on the same card.
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")'

# The recipe stops itself at the budget (the token caches' building counted in) and saves.
# A stop signal (SIGINT, SIGTERM) also makes it save: this shell and `tee` outlive it, so
# its last words are logged and what it saved is packed; its status is this script's.
status=0
# The options the copy was prepared with, as the recipe recorded them.
read -r hardware preset dropout < <(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["hardware"], r["preset"], r["train"].get("dropout", ""))' "$carry/recipe.json")
trap ':' INT TERM
python3 -m codemt.cli recipe default --out "$carry" --hardware "$hardware" --preset "$preset" \
    ${dropout:+--dropout "$dropout"} --train-only --budget "$budget" --quiet 2>&1 | (trap '' INT TERM; exec tee -a "$results/recipe.log") || status=$?
trap - INT TERM

python3 - "$carry" "$pack" <<'EOF' || { echo "nothing to pack" >&2; exit $(( status ? status : 1 )); }
import shutil
import sys
from pathlib import Path

from codemt.model import BEST_FILE, LATEST_FILE, load_checkpoint, write_model

run, pack = Path(sys.argv[1]) / "multimode", Path(sys.argv[2]) / "multimode"
try:
    loaded = load_checkpoint(run)  # the run's best checkpoint, else its newest
except FileNotFoundError as missing:
    sys.exit(f"no checkpoint to pack: {missing}")
write_model(loaded.model, pack / loaded.path.name, loaded.path, loaded.meta, int8=True)
for pointer in (BEST_FILE, LATEST_FILE):  # the run folder stands for the packed checkpoint
    (pack / pointer).write_text(loaded.path.name + "\n", encoding="utf-8")
if (run / "train_log.csv").is_file():
    shutil.copy2(run / "train_log.csv", pack / "train_log.csv")
print(f"packed {loaded.path.name} of {run} in 8 bits")
EOF
cp "$carry/recipe.json" "$pack/"
tar czf - -C "$pack" . | split -b "${part_mb}M" - "$results/run.tgz.part-"
ls -l "$results"
exit "$status"
