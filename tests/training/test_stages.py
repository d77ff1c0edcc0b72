"""`codemt train` end to end on a small corpus: both stages, resume, config files."""

import json

import pytest

from codemt.cli import main
from tests.conftest import STDLIB

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def train_args(corpus, out, *extra):
    return [
        "train",
        "--preset",
        "tiny",
        "--data",
        str(corpus),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def test_both_stages_then_resume(small_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(small_corpus, out, "--max-steps", "3", "--save-every", "3")) == 0
    assert "multimode/step-000003" in capsys.readouterr().out
    assert (out / "tokenizer" / "tokenizer.json").is_file(), (
        "a tokenizer is trained when none is given"
    )
    meta = json.loads((out / "multimode" / "step-000003" / "codemt.json").read_text())
    assert meta["stage"] == "multimode" and meta["init"].endswith("pretrain/step-000003")
    assert meta["modes"]["examples"]["max_source_tokens"] == 256

    assert main(train_args(small_corpus, out, "--max-steps", "5", "--resume")) == 0
    assert (out / "multimode" / "step-000005").is_dir() and (
        out / "pretrain" / "step-000005"
    ).is_dir()


def test_config_file_sets_and_checks_settings(small_corpus, small_tokenizer, tmp_path, capsys):
    from codemt.tokenizer import save_tokenizer

    save_tokenizer(small_tokenizer, tmp_path / "tok")
    config = tmp_path / "config.yaml"
    config.write_text(
        "train:\n  max_steps: 2\nexamples:\n  max_source_tokens: 64\nbatching:\n  max_tokens: 1024\n"
    )
    args = train_args(
        small_corpus, tmp_path / "run", "--stage", "pretrain", "--config", str(config)
    )
    assert main([*args, "--tokenizer", str(tmp_path / "tok")]) == 0
    # The given tokenizer folder is left as it was; checkpoints carry the corpus' word list.
    assert not (tmp_path / "tok" / "words.txt").exists()
    assert "return" in (tmp_path / "run" / "step-000002" / "words.txt").read_text().split()
    meta = json.loads((tmp_path / "run" / "step-000002" / "codemt.json").read_text())
    assert (
        meta["modes"]["examples"]["max_source_tokens"] == 64
        and meta["modes"]["batching"]["max_tokens"] == 1024
    )

    config.write_text("train:\n  max_stepz: 2\n")
    assert main(train_args(small_corpus, tmp_path / "other", "--config", str(config))) == 2
    assert "unknown setting(s) max_stepz" in capsys.readouterr().err


def test_missing_corpus_is_explained(tmp_path, capsys):
    assert main(train_args(tmp_path / "nothing", tmp_path / "run", "--max-steps", "1")) == 2
    assert "codemt mine" in capsys.readouterr().err


def test_a_signal_stops_the_command_not_just_the_stage(small_corpus, tmp_path, capsys, monkeypatch):
    import os
    import signal

    import codemt.training.loop as training

    real_train = training.train

    def train_then_signal(data, *args, **kwargs):
        class Signalling:
            def num_batches(self, *a, **k):
                return data.num_batches(*a, **k)

            def batches(self, *a, **k):
                for i, batch in enumerate(data.batches(*a, **k)):
                    if i == 1:
                        os.kill(os.getpid(), signal.SIGTERM)
                    yield batch

        return real_train(Signalling(), *args, **kwargs)

    monkeypatch.setattr(training, "train", train_then_signal)
    code = main(train_args(small_corpus, tmp_path / "run", "--max-steps", "5"))
    assert code == 130 and "SIGTERM" in capsys.readouterr().err
    assert (tmp_path / "run" / "pretrain" / "latest").is_file()
    assert not (tmp_path / "run" / "multimode").exists(), "the next stage must not start"


def test_selecting_on_a_task_needs_a_mode_and_its_validation_examples(
    small_corpus, small_tokenizer, tmp_path, capsys
):
    # (`test_loop.py` checks the selection itself.)
    from codemt.mine.pipeline import mine
    from codemt.mine.settings import MineSettings
    from codemt.tokenizer import save_tokenizer

    save_tokenizer(small_tokenizer, tmp_path / "tok")
    config = tmp_path / "config.yaml"
    all_train = tmp_path / "all-train"  # a corpus without a validation split
    mine(
        [str(STDLIB / "textwrap.py")],
        all_train,
        MineSettings(
            split_ratios=(1.0, 0.0, 0.0), workers=1, progress=False, cache_dir=tmp_path / "cache"
        ),
    )
    for corpus, mode, error in [
        (
            small_corpus,
            "body->docstrin",
            "select_on 'body->docstrin': expected a mode of multi-mode training",
        ),
        (all_train, "signature+body->docstring", "the validation split has no such examples"),
    ]:
        config.write_text(f"train:\n  max_steps: 2\nmultimode:\n  select_on: {mode}\n")
        args = train_args(corpus, tmp_path / "run", "--stage", "multimode")
        assert main([*args, "--config", str(config), "--tokenizer", str(tmp_path / "tok")]) == 2
        assert error in capsys.readouterr().err


def test_a_deadline_bounds_the_token_caches_too(small_corpus, tmp_path, capsys, monkeypatch):
    import time

    from codemt.training import loop
    from codemt.training.stages import run_training

    def run(deadline):
        return run_training(small_corpus, tmp_path / "run", preset="tiny", stage="multimode",
                            overrides={"max_steps": 2}, deadline=deadline, progress=False)  # fmt: skip

    # Caches that take all the time leave none to train in: nothing starts.
    assert run(time.monotonic()) is None
    assert "ran out building the token caches" in capsys.readouterr().err
    assert not list((tmp_path / "run").glob("step-*"))

    # Otherwise training gets what is left after them, not the whole budget again.
    seen = {}
    monkeypatch.setattr(
        loop, "train", lambda data, settings, *a, **k: seen.setdefault("s", settings)
    )
    run(time.monotonic() + 600)
    assert 0 < seen["s"].max_time < 600
