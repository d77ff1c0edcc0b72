"""Hand-check material for project memory on a package outside the corpus.

15 documented public functions (5 lines or more, at most 2 a module) of an unpacked sdist
are drawn at random, their docstrings stripped from a copy; the rest of the package stays
documented and is the project memory. Each model writes their docstrings alone and, if it
reads memory, with it; the JSON printed holds them beside the originals, to be judged by
hand (the model card's "Hand checks").

    pip download boltons --no-deps --no-binary :all: && tar xzf boltons-*.tar.gz
    python benchmarks/memory_outside_package.py boltons-26.2.0 /tmp/check default OTHER_MODEL

The copy goes to OUT/stripped: keep OUT outside any folder git ignores (the memory reads
what `codemt docstring` would, and skips what .gitignore hides).
"""

import ast
import json
import random
import shutil
import sys
from pathlib import Path

from codemt.memory import ProjectMemory, likeness
from codemt.source.docstrings import summary_of
from codemt.translate import Translator
from codemt.write.apply import read_source

src, out = Path(sys.argv[1]), Path(sys.argv[2])
models = sys.argv[3:]
work = out / "stripped"
if work.exists():
    shutil.rmtree(work)
shutil.copytree(src, work)
package = next(p for p in sorted(work.iterdir()) if (p / "__init__.py").is_file())
files = sorted(p for p in package.glob("*.py") if not p.name.startswith("_"))
candidates = []
for path in files:
    for f in read_source(path).functions:
        if f.docstring and f.lines >= 5 and f.public and len(f.docstring.split()) >= 4:
            candidates.append((path, f.name, f.line, summary_of(f.docstring)))
random.Random(0).shuffle(candidates)
chosen, modules = [], {}
for c in candidates:  # at most 2 a module, 15 in all
    if modules.get(c[0], 0) < 2:
        chosen.append(c)
        modules[c[0]] = modules.get(c[0], 0) + 1
    if len(chosen) == 15:
        break
# Strip the chosen docstrings from the copy.
for path in {c[0] for c in chosen}:
    lines = path.read_text().split("\n")
    tree = ast.parse("\n".join(lines))
    names = {c[2] for c in chosen if c[0] == path}
    drop = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.lineno in names:
            doc = node.body[0]
            drop.update(range(doc.lineno - 1, doc.end_lineno))
    path.write_text("\n".join(text for i, text in enumerate(lines) if i not in drop))
memory = ProjectMemory.open(work, cache_dir=None)
records = []
for path, name, _, original in chosen:
    [f] = [f for f in read_source(path).functions if f.name == name]
    assert not f.docstring
    records.append((f.record, original, path.name))
rows = {r[0]["name"]: {"file": r[2], "original": r[1]} for r in records}
for r in records:
    found = memory.neighbors(r[0], 3)
    rows[r[0]["name"]]["nearest"] = found[0].docstring if found else ""
    # Below `least_likeness`, a docstring is written alone.
    alike = (likeness(r[0], n.as_record()) for n in found)
    rows[r[0]["name"]]["likeness"] = round(max(alike, default=0.0), 3)
for model in models:
    t = Translator.load(model, backend="torch")
    alone = t.translate_batch([{**r[0], "neighbors": []} for r in records], "docstring")
    for r, a in zip(records, alone, strict=True):
        rows[r[0]["name"]][f"{model}:alone"] = a.text
    if t.reads_neighbors:
        withm = t.translate_batch([r[0] for r in records], "docstring", memory=memory)
        for r, a in zip(records, withm, strict=True):
            rows[r[0]["name"]][f"{model}:memory"] = a.text
print(json.dumps(rows, indent=1))
