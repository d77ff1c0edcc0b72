"""Training data at scale: planning epochs of a token cache of millions of methods.

For each size N a first subprocess writes a synthetic token cache in the cache's own
format (`codemt.token_cache.TokenCache`): field lengths drawn like the 884k-method cache
of the default recipe's corpus (log-normal, about 410 tokens a method, two methods in
five documented for the task, a third without any docstring), the training neighbours
file (three per target, from the same "repository" of 200 methods), and a tokens file
of the right size that is sparse (all zeros, holding no disk): planning reads lengths
only, and building batches reads the ids through the memory map either way.

A second, fresh subprocess then opens the cache as training does and times
`ExampleData` (the multimode stage, reading neighbours as the default recipe's
fine-tuning does): setting it up, planning an epoch, planning the next, and building
200 of its batches. It prints one JSON line per size with `methods`, `examples`,
`batches`, the seconds of each step, `peak_anon_mb` (the most anonymous memory the
process held, sampled every few milliseconds: what it allocated itself) and
`peak_rss_mb` (VmHWM, which also counts the pages of the memory-mapped offsets and
tokens it read, file pages the kernel drops when memory is short), then the per-method
cost of both between the two largest sizes and the extrapolation to 26M methods.

    python benchmarks/train_data_scale.py --sizes 1000000 4000000 8000000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TARGET_METHODS = 26_000_000


def write_cache(folder: Path, methods: int, seed: int) -> None:
    import numpy as np

    from codemt.examples import TOKEN_FIELDS
    from codemt.token_cache import NEIGHBORS_FORMAT, TOKENS_FILE

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    # signature, docstring, body, summary, class, decorators, imports, names
    medians = {"signature": 14, "docstring": 40, "body": 150, "summary": 14, "class": 20,
               "decorators": 3, "imports": 60, "names": 6}  # fmt: skip
    lengths = np.zeros((methods, len(TOKEN_FIELDS)), dtype=np.int64)
    for f, name in enumerate(TOKEN_FIELDS):
        lengths[:, f] = rng.lognormal(np.log(medians[name]), 0.9, methods).astype(np.int64)
    undocumented = rng.random(methods) < 0.33
    lengths[undocumented, TOKEN_FIELDS.index("docstring")] = 0
    lengths[undocumented, TOKEN_FIELDS.index("summary")] = 0
    no_class = rng.random(methods) < 0.5
    lengths[no_class, TOKEN_FIELDS.index("class")] = 0
    task = (~undocumented) & (rng.random(methods) < 0.6)
    offsets = np.zeros((methods, len(TOKEN_FIELDS) + 1), dtype=np.int64)
    offsets[:, 1:] = np.cumsum(lengths, axis=1)
    offsets += np.concatenate([[0], np.cumsum(offsets[:-1, -1])])[:, None]
    np.save(folder / "offsets.npy", offsets)
    np.save(
        folder / "style.npy", np.where(undocumented, 0, rng.integers(1, 6, methods)).astype(np.int8)
    )
    np.save(folder / "docstring_task.npy", task)
    np.save(folder / "key.npy", rng.random(methods))
    total = int(offsets[-1, -1])
    with open(folder / TOKENS_FILE, "wb") as file:
        file.truncate(total * 4)  # sparse: zeros that hold no disk
    (folder / "meta.json").write_text(
        json.dumps(
            {"corpus": "", "split": "train", "limit": None, "methods": methods, "tokens": total}
        )  # fmt: skip
    )
    # Three neighbours per target among the 200 methods of the same "repository".
    repo_start = np.arange(methods) // 200 * 200
    found = {}
    for target in ("docstring", "body"):
        picks = repo_start[:, None] + rng.integers(0, 200, (methods, 3))
        picks = np.minimum(picks, methods - 1).astype(np.int32)
        picks[picks == np.arange(methods)[:, None]] = -1
        picks[undocumented] = -1
        found[target] = picks
    np.savez(folder / f"neighbors-{NEIGHBORS_FORMAT}-3.npz", **found)


def measure(folder: Path) -> dict:
    from codemt.data import BatchSettings, ExampleData
    from codemt.examples import ExampleSettings, Vocabulary
    from codemt.token_cache import TokenCache

    vocab = Vocabulary(
        eos=1, pad=0, features={"signature": 2, "docstring": 3, "body": 4, "class": 5,
                                "decorators": 6, "imports": 7},
        targets={"signature": 8, "docstring": 9, "body": 10},
        styles={s: 11 + i for i, s in enumerate(("summary", "google", "numpy", "rest", "author"))},
        sentinels=tuple(range(100, 200)), newline_ids=frozenset({50}),
    )  # fmt: skip
    settings = ExampleSettings(
        max_source_tokens=128, max_target_tokens=96, undocumented_share=0.2, name_words=True,
        neighbors=3, neighbor_share=0.6, neighbor_tokens=48,
    )  # fmt: skip
    times = {}
    sampler = AnonSampler()
    sampler.start()
    t = time.perf_counter()
    cache = TokenCache(folder)
    data = ExampleData(cache, vocab, "multimode", settings, BatchSettings(max_tokens=4096))
    times["setup_s"] = time.perf_counter() - t
    t = time.perf_counter()
    plan = data.plan(0)
    times["plan_s"] = time.perf_counter() - t
    t = time.perf_counter()
    data.plan(1)
    times["next_plan_s"] = time.perf_counter() - t
    t = time.perf_counter()
    built = 0
    for _ in zip(range(200), data.batches(1), strict=False):
        built += 1
    times["batches_per_s"] = built / (time.perf_counter() - t)
    sampler.stop()
    return {
        "methods": len(cache),
        "examples": len(plan),
        "batches": plan.num_batches,
        **{k: round(v, 2) for k, v in times.items()},
        "peak_anon_mb": round(sampler.peak / 1024),
        "peak_rss_mb": round(status_kb("VmHWM") / 1024),
    }


def status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


class AnonSampler(threading.Thread):
    """The most anonymous memory (RssAnon) this process holds while it runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.done = 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, status_kb("RssAnon"))
            time.sleep(0.005)

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.peak = max(self.peak, status_kb("RssAnon"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="where the caches go (default: a temp dir)")
    parser.add_argument("--write", type=Path, help=argparse.SUPPRESS)  # the first subprocess
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the second
    parser.add_argument("--methods", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        write_cache(args.write, args.methods, args.seed)
        return
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    rows = []
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        for size in args.sizes:
            folder = Path(work) / f"cache-{size}"
            command = [sys.executable, __file__, "--seed", str(args.seed)]
            subprocess.run([*command, "--write", str(folder), "--methods", str(size)], check=True)
            out = subprocess.run(
                [*command, "--measure", str(folder)], check=True, capture_output=True, text=True
            ).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    if len(rows) >= 2:
        a, b = rows[-2], rows[-1]
        summary = {"extrapolated_methods": TARGET_METHODS}
        for key in ("peak_anon_mb", "peak_rss_mb", "plan_s"):
            grow = (b[key] - a[key]) / (b["methods"] - a["methods"])
            if key.endswith("_mb"):
                summary[f"{key[:-3]}_bytes_per_method"] = round(grow * 2**20)
            summary[f"extrapolated_{key}"] = round(b[key] + grow * (TARGET_METHODS - b["methods"]))
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
