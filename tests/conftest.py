"""Shared fixtures: a small real corpus mined from a few standard-library modules, and a tokenizer."""

import sysconfig
from pathlib import Path

import pytest

STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODULES = ["json", "email", "textwrap.py", "shlex.py", "fractions.py", "statistics.py"]


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """A corpus of a few hundred real methods, split across several repositories."""
    from codemt.mine.pipeline import MineSettings, mine

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
