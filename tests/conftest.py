"""Shared fixtures (a small real corpus mined from a few standard-library modules, a tokenizer,
a tiny model) and helpers."""

import ast
import sysconfig
from pathlib import Path

import pytest

STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODULES = ["json", "email", "textwrap.py", "shlex.py", "fractions.py", "statistics.py"]


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """A corpus of a few hundred real methods, split across several repositories."""
    from codemt.mine.pipeline import mine
    from codemt.mine.settings import MineSettings

    root = tmp_path_factory.mktemp("corpus")
    sources = [str(STDLIB / m) for m in MODULES]
    mine(
        sources, root / "corpus", MineSettings(workers=1, progress=False, cache_dir=root / "cache")
    )
    return root / "corpus"


@pytest.fixture(scope="session")
def small_tokenizer(small_corpus):
    """A byte-level BPE of 1,000 tokens trained on the small corpus."""
    from codemt.tokenizer import TokenizerSettings, corpus_texts, train_tokenizer

    return train_tokenizer(corpus_texts(small_corpus), TokenizerSettings(vocab_size=1000))


@pytest.fixture(scope="session")
def tiny_model(small_corpus, small_tokenizer, tmp_path_factory) -> Path:
    """The run folder of a tiny multi-mode model trained for 40 steps on the small corpus."""
    from dataclasses import asdict

    import torch

    from codemt.corpus import Corpus
    from codemt.data import BatchSettings, ExampleData
    from codemt.examples import ExampleSettings, Vocabulary
    from codemt.model import PRESETS
    from codemt.token_cache import TokenCache
    from codemt.tokenizer import save_tokenizer
    from codemt.training.config import TrainSettings
    from codemt.training.loop import train

    root = tmp_path_factory.mktemp("tiny_model")
    save_tokenizer(small_tokenizer, root / "tokenizer")
    cache = TokenCache.build(Corpus.open(small_corpus), "train", small_tokenizer, root / "cache")
    examples = ExampleSettings(max_source_tokens=PRESETS["tiny"].context, max_target_tokens=64)
    vocab = Vocabulary.from_tokenizer(small_tokenizer)
    data = ExampleData(cache, vocab, "multimode", examples, BatchSettings(max_tokens=4096))
    settings = TrainSettings(
        preset="tiny", lr=3e-3, warmup_steps=5, max_steps=40, eval_every=0, save_every=0
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # threads only slow a tiny model down on a busy machine
    try:
        train(
            data,
            settings,
            root / "run",
            root / "tokenizer",
            stage="multimode",
            modes={"examples": asdict(examples)},  # where `codemt train` records them
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    return root / "run"


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread: tiny models gain nothing from threads, and on a busy
    machine threads that wait on each other make every step many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def without_docstrings(tree: ast.Module, keep_for: ast.Module | None = None) -> str:
    """`ast.dump` of a tree without function docstrings (only where `keep_for` has none)."""
    reference = None
    if keep_for is not None:
        reference = [
            n for n in ast.walk(keep_for) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for i, node in enumerate(functions):
        if reference is not None and ast.get_docstring(reference[i]) is not None:
            continue
        if ast.get_docstring(node) is not None:
            node.body = node.body[1:]
    return ast.dump(tree)
