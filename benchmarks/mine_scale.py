"""Mining at scale: global de-duplication, the split and the shards on synthetic staged methods.

`codemt mine` works in two phases (see codemt/mine/pipeline.py): extraction stages each
source's method records, with their de-duplication keys, under `DIR/.work/staged/`; the
finishing phase then de-duplicates all staged records globally (exact keys and MinHash
LSH band keys, greedy in a fixed preference order), splits the survivors by repository
and writes the Parquet shards and the manifest. This benchmark measures the finishing
phase alone, as `codemt mine` runs it, at growing numbers of methods.

For each size N a first subprocess writes synthetic staged records in the stage's own
format (`staging.Stage.save`, with keys from `records.keyed` as extraction adds them): N methods over about
N/200 repositories of skewed sizes, one source per repository (as a list file of GitHub
repositories gives), with a known share of exact copies (default 10%, same signature and
body as a method anywhere else) and near copies (default 5%, one attribute or call name of
the body changed). A second, fresh subprocess then calls `codemt.mine.pipeline.mine` on
those sources; every source is already staged, so only the finishing phase runs. It
prints one JSON line per size, `{"methods", "kept", "seconds", "peak_rss_mb"}` (peak RSS:
VmHWM of that process), then a line with the time and peak memory of each step, and at
the end the ratios between consecutive sizes and a linear extrapolation to 26M methods
(PyMT5's corpus) from the largest two sizes.

    python benchmarks/mine_scale.py [--sizes 100000 200000 400000] [--seed 0] [--workers N]
    python benchmarks/mine_scale.py --sizes 20000 --tracemalloc   # where the memory goes
    python benchmarks/mine_scale.py --sizes 1000000 --work DIR --keep   # staged once, reused
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from itertools import accumulate
from pathlib import Path

TARGET_METHODS = 26_000_000  # PyMT5's corpus of Python methods
MEAN_METHODS_PER_REPO = 200
METHODS_PER_FILE = 15


# ---------------------------------------------------------------- synthetic methods


def _vocabulary(size: int, rng: random.Random) -> list[str]:
    """Identifier-like words made of syllables, distinct, in a fixed order."""
    syllables = [c + v for c in "bcdfghklmnprstvwz" for v in "aeiou"]
    words: dict[str, None] = {}
    while len(words) < size:
        parts = rng.choices(syllables, k=rng.choice((2, 2, 3, 3, 4)))
        word = "".join(parts)
        if rng.random() < 0.3:
            word += "_" + "".join(rng.choices(syllables, k=2))
        words[word] = None
    return list(words)


class Synthesizer:
    """Deterministic method records: the content of a method is a function of its content id,
    so exact and near copies are rebuilt from the id of their original without holding it."""

    def __init__(self, seed: int):
        rng = random.Random(seed)
        self.seed = seed
        self.words = _vocabulary(4000, rng)
        # Zipf-like word frequencies: a few names (get, items, ...) are everywhere.
        self.cum_weights = list(accumulate(1.0 / (rank + 1) ** 0.9 for rank in range(4000)))

    def _rng(self, content_id: int) -> random.Random:
        return random.Random(self.seed * 1_000_003 + content_id)

    def _pick(self, rng: random.Random, k: int = 1) -> list[str]:
        return rng.choices(self.words, cum_weights=self.cum_weights, k=k)

    def content(self, content_id: int) -> tuple[str, str, list[str]]:
        """(signature, body, the attribute and call names of the body) of one method."""
        rng = self._rng(content_id)
        name = "_".join(self._pick(rng, rng.choice((1, 2, 2, 3))))
        params = list(dict.fromkeys(self._pick(rng, rng.randint(1, 4))))
        locals_ = [w for w in dict.fromkeys(self._pick(rng, 4)) if w not in params] or ["result"]
        defaults = params[:-1] + [f"{params[-1]}=None" if rng.random() < 0.3 else params[-1]]
        signature = f"def {name}(self, {', '.join(defaults)}):"
        names: list[str] = []

        def attr() -> str:
            word = self._pick(rng)[0]
            names.append(word)
            return word

        lines: list[str] = []
        for _ in range(rng.randint(6, 11)):
            local, param = rng.choice(locals_), rng.choice(params)
            kind = rng.randrange(7)
            if kind == 0:
                lines.append(f"    {local} = self.{attr()}({param}, {rng.randint(0, 99)})")
            elif kind == 1:
                lines.append(f"    {local} = {attr()}({param}.{attr()}, {rng.choice(params)})")
            elif kind == 2:
                lines += [f"    if {local} is None:", f"        return {param}.{attr()}()"]
            elif kind == 3:
                item = rng.choice(locals_)
                lines += [
                    f"    for {item} in {param}.{attr()}():",
                    f"        {local}.{attr()}({item})",
                ]
            elif kind == 4:
                lines.append(f"    {local} += len({param}.{attr()})")
            elif kind == 5:
                message = " ".join(self._pick(rng, rng.randint(2, 5)))
                lines += [
                    f"    if not {param}:",
                    f"        raise ValueError('{message}')",
                ]
            else:
                lines.append(f"    self.{attr()} = {local}")
        lines.append(f"    return {rng.choice(locals_)}")
        return signature, "\n".join(lines), names

    def near_copy(self, content_id: int, copy_id: int) -> tuple[str, str]:
        """The method `content_id` with one attribute or call name of its body changed."""
        signature, body, names = self.content(content_id)
        rng = self._rng(-1 - copy_id)
        if not names:  # a body of checks alone: the copy gains a line instead
            return signature, body + f"\n    self.{self._pick(rng)[0]} = None"
        old = rng.choice(names)
        new = rng.choice([w for w in self._pick(rng, 4) if w != old] or ["changed"])
        for before in (f".{old}(", f".{old})", f".{old}", f"{old}("):
            if before in body:
                return signature, body.replace(before, before.replace(old, new), 1)
        return signature, body + f"\n    self.{new} = None"

    def docstring(self, rng: random.Random) -> str:
        if rng.random() < 0.4:
            return ""
        summary = " ".join(self._pick(rng, rng.randint(3, 9))).capitalize() + "."
        if rng.random() < 0.5:
            return summary
        args = "\n".join(f"    {w}: {' '.join(self._pick(rng, 4))}." for w in self._pick(rng, 2))
        return f"{summary}\n\nArgs:\n{args}"


def _roles(n: int, exact_share: float, near_share: float, seed: int) -> tuple[list[int], int, int]:
    """The content id of every method slot: uniques are their own; an exact copy takes any
    unique's id, a near copy -(1 + unique id) of a unique no other near copy uses."""
    rng = random.Random(seed)
    n_exact, n_near = round(n * exact_share), round(n * near_share)
    slots = list(range(n))
    rng.shuffle(slots)
    exact, near, unique = (
        slots[:n_exact],
        slots[n_exact : n_exact + n_near],
        slots[n_exact + n_near :],
    )
    content = list(range(n))
    for slot in exact:
        content[slot] = rng.choice(unique)
    for slot, original in zip(near, rng.sample(unique, n_near), strict=True):
        content[slot] = -1 - original
    return content, n_exact, n_near


def _repo_sizes(n: int, seed: int) -> list[int]:
    """About n/200 repositories of log-normal sizes (a few large, many small), summing to n."""
    import numpy as np

    rng = np.random.default_rng(seed)
    repos = max(1, n // MEAN_METHODS_PER_REPO)
    weights = rng.lognormal(mean=0.0, sigma=1.3, size=repos)
    sizes = 1 + rng.multinomial(n - repos, weights / weights.sum())
    return [int(s) for s in sizes]


def spec_of(repo: str) -> str:
    return f"https://github.com/{repo}"


def generate(n: int, out: Path, seed: int, exact_share: float, near_share: float) -> dict:
    """Stage n synthetic methods under `out/.work/staged/`, one source per repository."""
    from codemt.mine.records import Tally, keyed
    from codemt.mine.settings import MineSettings
    from codemt.mine.staging import Stage

    settings = MineSettings(workers=1, progress=False, cache_dir=out / "cache")
    stage = Stage(out, settings)
    synth = Synthesizer(seed)
    content_ids, n_exact, n_near = _roles(n, exact_share, near_share, seed)
    specs = []
    slot = 0
    for index, size in enumerate(_repo_sizes(n, seed)):
        repo = f"synthetic{index % 97:02d}/repo{index:07d}"
        rng = random.Random(seed * 7919 + index)
        imports_pool = [f"import {w}" for w in synth._pick(rng, 6)] + [
            f"from {a} import {b}"
            for a, b in zip(synth._pick(rng, 6), synth._pick(rng, 6), strict=True)
        ]
        pairs = []
        tally = Tally()
        for file_index in range(0, size, METHODS_PER_FILE):
            path = f"{'/'.join(synth._pick(rng, rng.randint(1, 3)))}/mod{file_index}.py"
            imports = rng.sample(imports_pool, rng.randint(2, 8))
            class_name = rng.random() < 0.6 and "".join(w.capitalize() for w in synth._pick(rng, 2))
            lineno = 1 + len(imports)
            for _ in range(min(METHODS_PER_FILE, size - file_index)):
                content_id = content_ids[slot]
                if content_id >= 0:
                    signature, body, _ = synth.content(content_id)
                else:
                    signature, body = synth.near_copy(-1 - content_id, slot)
                slot += 1
                docstring = synth.docstring(rng)
                name = signature[4 : signature.index("(")]
                record = {
                    "repo": repo,
                    "path": path,
                    "name": f"{class_name}.{name}" if class_name else name,
                    "lineno": lineno,
                    "signature": signature,
                    "docstring": docstring,
                    "docstring_raw": docstring,
                    "body": body,
                    "decorators": ["property"] if rng.random() < 0.05 else [],
                    "class_name": class_name or "",
                    "class_bases": ["object"] if class_name else [],
                    "class_docstring": "A class of things." if class_name else "",
                    "imports": imports,
                    "docstring_style": "google" if "Args:" in docstring else "summary",
                    "is_async": False,
                    "split": "",
                }
                lineno += 3 + body.count("\n") + docstring.count("\n")
                # The function node gives the parameters the keys alpha-rename.
                node = ast.parse(signature + "\n    pass").body[0]
                pairs.append((node, record))
        records = keyed(pairs, settings, tally.counts)
        tally.counts.update(
            repos=1,
            files_seen=-(-size // METHODS_PER_FILE),
            files_parsed=-(-size // METHODS_PER_FILE),
            methods=size,
        )
        spec = spec_of(repo)
        stage.save(spec, records, tally, [])
        specs.append(spec)
    assert slot == n
    return {"specs": specs, "exact": n_exact, "near": n_near}


# ---------------------------------------------------------------- measuring the finish


def _vm(field: str) -> float:
    """A VmXXX line of /proc/self/status, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def finish(out: Path, specs: list[str], trace: bool, workers: int) -> dict:
    """Run `codemt mine` on the staged sources (only its finishing phase has work left)."""
    from codemt.mine import pipeline, selection
    from codemt.mine.settings import MineSettings

    steps: dict[str, dict] = {}
    can_reset = _reset_peak()

    def timed(name, function):
        def wrapper(*args, **kwargs):
            before = _vm("VmRSS")
            if can_reset:
                _reset_peak()
            t0 = time.perf_counter()
            result = function(*args, **kwargs)
            steps[name] = {
                "seconds": round(time.perf_counter() - t0, 2),
                "rss_before_mb": round(before),
                "peak_rss_mb": round(_vm("VmHWM")) if can_reset else None,
            }
            return result

        return wrapper

    peaks = []  # VmHWM before each step resets it: the overall peak is the largest of all
    # Patched where `mine` looks them up.
    for name in ("deduplicate", "assign_splits", "write_shards"):
        step = timed(name, getattr(pipeline, name))

        def keep_peak(*args, _step=step, **kwargs):
            peaks.append(_vm("VmHWM"))
            return _step(*args, **kwargs)

        setattr(pipeline, name, keep_peak)

    snapshot = {}
    if trace:
        import tracemalloc

        import pyarrow as pa

        original = selection._ranks
        calls = {"n": 0}

        def tracing(values):
            """Snapshots at the last ranking (the last band's), when all of `deduplicate`'s
            keys live: the read keys, the ranks so far and the last band's sort."""
            ranked = original(values)
            calls["n"] += 1
            if calls["n"] == 1 + total_bands:
                snapshot["python"] = tracemalloc.take_snapshot()
                snapshot["arrow_mb"] = pa.total_allocated_bytes() / 2**20
                snapshot["rss_mb"] = _vm("VmRSS")
            return ranked

        selection._ranks = tracing  # where `deduplicate` looks it up
        tracemalloc.start(1)

    baseline = _vm("VmRSS")
    settings = MineSettings(workers=workers, progress=False, cache_dir=out / "cache")
    if trace:
        from codemt.mine.dedup import lsh_plan

        total_bands = lsh_plan(settings.dedup.threshold, settings.dedup.num_perm)[0]
    t0 = time.perf_counter()
    manifest = pipeline.mine(specs, out, settings)
    seconds = time.perf_counter() - t0
    peaks.append(_vm("VmHWM"))
    result = {
        "methods": manifest["dedup"]["methods_before"],
        "kept": manifest["dedup"]["methods_after"],
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(max(peaks)),
        "baseline_rss_mb": round(baseline),
        "exact_duplicates": manifest["dedup"]["exact_duplicates"],
        "near_duplicates": manifest["dedup"]["near_duplicates"],
        "splits": {s: v["methods"] for s, v in manifest["splits"].items()},
        "steps": steps,
        "shards": len(manifest["shards"]),
    }
    if snapshot:
        stats = snapshot["python"].statistics("lineno")
        result["tracemalloc"] = {
            "rss_mb": round(snapshot["rss_mb"]),
            "python_traced_mb": round(sum(s.size for s in stats) / 2**20, 1),
            "arrow_mb": round(snapshot["arrow_mb"], 1),
            "top": [
                {
                    "where": f"{Path(s.traceback[0].filename).name}:{s.traceback[0].lineno}",
                    "mb": round(s.size / 2**20, 1),
                    "blocks": s.count,
                    "code": _source_line(s.traceback[0].filename, s.traceback[0].lineno),
                }
                for s in stats[:12]
            ],
        }
    return result


def _source_line(filename: str, lineno: int) -> str:
    import linecache

    return linecache.getline(filename, lineno).strip()[:90]


# ---------------------------------------------------------------- driver


def _child(argv: list[str]) -> dict:
    """Run this script in a fresh interpreter; its last stdout line is a JSON result."""
    done = subprocess.run(
        [sys.executable, __file__, *argv], check=True, stdout=subprocess.PIPE, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _extrapolate(rows: list[dict], key: str, target: int) -> tuple[float, float]:
    """Linear in methods through the largest two sizes: (value at target, cost per method)."""
    a, b = rows[-2], rows[-1]
    slope = (b[key] - a[key]) / (b["methods"] - a["methods"])
    return b[key] + slope * (target - b["methods"]), slope


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 200_000, 400_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exact-share", type=float, default=0.10)
    parser.add_argument("--near-share", type=float, default=0.05)
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also snapshot Python allocations at the end of de-duplication (slow; small sizes)",
    )
    parser.add_argument("--work", type=Path, default=None, help="folder for staging and shards")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="the local engine's workers for the finish (the shards are written on as many threads)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the staged methods under --work and use them again in a later run with "
        "the same size, seed and shares (generating 4M takes about half an hour)",
    )
    # Internal: the subprocesses.
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--finish", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.generate is not None:
        info = generate(args.generate, args.work, args.seed, args.exact_share, args.near_share)
        (args.work / "specs.json").write_text(json.dumps(info["specs"]))
        print(json.dumps({"exact": info["exact"], "near": info["near"]}))
        return
    if args.finish:
        specs = json.loads((args.work / "specs.json").read_text())
        print(json.dumps(finish(args.work, specs, args.tracemalloc, args.workers)))
        return
    from codemt import __version__

    if args.keep and args.work is None:
        parser.error("--keep needs --work DIR")
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)

    rows = []
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for n in args.sizes:
            shares = ["--exact-share", str(args.exact_share), "--near-share", str(args.near_share)]
            if args.keep:
                # Staged by this codemt: another version may stage differently.
                version = f"codemt{__version__}"
                work = (
                    args.work
                    / f"n{n}-seed{args.seed}-{args.exact_share}-{args.near_share}-{version}"
                )
            else:
                work = Path(tmp) / f"n{n}"
            common = ["--seed", str(args.seed), "--work", str(work)]
            planted_file = work / "planted.json"
            if planted_file.is_file():
                planted = json.loads(planted_file.read_text())
                print(f"# {n} methods staged before, in {work}", file=sys.stderr)
            else:
                t0 = time.perf_counter()
                planted = _child(["--generate", str(n), *common, *shares])
                planted_file.write_text(json.dumps(planted))
                print(
                    f"# {n} methods staged in {time.perf_counter() - t0:.0f} s",
                    file=sys.stderr,
                )
            staged_mb = sum(p.stat().st_size for p in (work / ".work").rglob("*.parquet")) / 2**20
            print(
                f"# {staged_mb:.0f} MB of staged Parquet; planted {planted['exact']} exact and "
                f"{planted['near']} near copies",
                file=sys.stderr,
            )
            workers = ["--workers", str(args.workers)]
            trace = ["--tracemalloc"] if args.tracemalloc else []
            result = _child(["--finish", *common, *workers, *trace])
            row = {k: result[k] for k in ("methods", "kept", "seconds", "peak_rss_mb")}
            print(json.dumps(row), flush=True)
            unique = n - planted["exact"] - planted["near"]
            steps = ", ".join(
                f"{name} {s['seconds']} s (peak {s['peak_rss_mb']} MB)"
                for name, s in result["steps"].items()
            )
            print(
                f"#   removed {result['exact_duplicates']} exact and "
                f"{result['near_duplicates']} near duplicates; planted {planted['exact']} "
                f"exact and {planted['near']} near, so {unique} unique methods and "
                f"{result['kept'] - unique} near copies missed by LSH; "
                f"splits {result['splits']}; {result['shards']} shards\n"
                f"#   steps: {steps}; RSS after imports {result['baseline_rss_mb']} MB",
                flush=True,
            )
            if "tracemalloc" in result:
                tm = result["tracemalloc"]
                print(
                    f"#   at the last offer of de-duplication: RSS {tm['rss_mb']} MB, "
                    f"Python objects {tm['python_traced_mb']} MB (tracemalloc), "
                    f"Arrow buffers {tm['arrow_mb']} MB; largest allocation sites:"
                )
                for top in tm["top"]:
                    print(
                        f"#     {top['mb']:>8} MB {top['blocks']:>9} blocks  "
                        f"{top['where']}: {top['code']}"
                    )
            rows.append({**row, "staged_mb": staged_mb})
            if not args.keep:
                _remove(work)

    if len(rows) < 2:
        return
    print("\nratios between consecutive sizes (methods, seconds, peak RSS):")
    for a, b in zip(rows, rows[1:], strict=False):
        print(
            f"  {a['methods']} -> {b['methods']}: x{b['methods'] / a['methods']:.2f} methods, "
            f"x{b['seconds'] / a['seconds']:.2f} seconds, "
            f"x{b['peak_rss_mb'] / a['peak_rss_mb']:.2f} peak RSS"
        )
    seconds, per_method_s = _extrapolate(rows, "seconds", TARGET_METHODS)
    memory, per_method_mb = _extrapolate(rows, "peak_rss_mb", TARGET_METHODS)
    print(
        f"\nEXTRAPOLATION, not a measurement: linear in methods through the "
        f"{rows[-2]['methods']} and {rows[-1]['methods']} rows, {TARGET_METHODS:,} methods "
        f"would take about {seconds / 3600:.1f} h and {memory / 1024:.0f} GB peak RSS "
        f"({per_method_mb * 2**20:.0f} bytes and {per_method_s * 1e6:.0f} us per method "
        f"on the margin)."
    )
    if rows[-1]["methods"] < 100_000:
        print("(below 100k methods the fixed costs dominate: the slope means little)")


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
