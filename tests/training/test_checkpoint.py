"""Tests of checkpoints: rotation and round trips, the log they carry, and resuming from
damaged ones (each file truncated, changed or missing; a dangling `latest`)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from codemt.model import LATEST_FILE, load_checkpoint
from codemt.training.checkpoint import LOG_FILE, checkpoint_damage, resume_point
from codemt.training.loop import corpus_lineage, train
from tests.training.test_loop import SyntheticData, read_log, save_tiny_tokenizer, tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    return save_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def test_checkpoints_rotate_and_round_trip(tmp_path, tokenizer_dir):
    run = tmp_path / "run"
    settings = tiny(max_steps=6, save_every=2, keep_last=2, eval_every=3)
    final = train(
        SyntheticData(n_batches=3),
        settings,
        run,
        tokenizer_dir,
        valid_data=SyntheticData(n_batches=2, seed=7),
        stage="multimode",
        modes={"<to_docstring>": ["signature", "body"]},
        corpus_digest="sha256:abc",
        progress=False,
    )
    assert final == run / "step-000006"
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("step-")) == [
        "step-000004",
        "step-000006",
    ]
    assert not list(run.glob(".tmp-*"))
    assert (run / LATEST_FILE).read_text().strip() == "step-000006"
    for name in ("model.safetensors", "config.json", "codemt.json", "tokenizer.json", LOG_FILE):
        assert (final / name).is_file(), name
    for name in ("optimizer.pt", "scheduler.pt", "rng-0.pt", "progress.json"):
        assert (final / "state" / name).is_file(), name

    checkpoint = load_checkpoint(run)  # a run folder opens its newest checkpoint
    assert checkpoint.path == final
    meta = checkpoint.meta
    assert meta["stage"] == "multimode" and meta["corpus_digest"] == "sha256:abc"
    # The corpora of every stage: a start from this run adds its own to this one's; a start
    # from a model that records none leaves them unknown.
    assert meta["corpus_digests"] == ["sha256:abc"]
    assert corpus_lineage(run, "sha256:def") == ["sha256:abc", "sha256:def"]
    assert corpus_lineage(None, "sha256:def") == ["sha256:def"]
    assert corpus_lineage(run, None) is None
    meta_file = final / "codemt.json"
    recorded = meta_file.read_text()
    meta_file.write_text(json.dumps({k: v for k, v in meta.items() if k != "corpus_digests"}))
    assert corpus_lineage(run, "sha256:def") is None
    meta_file.write_text(recorded)
    assert meta["modes"] == {"<to_docstring>": ["signature", "body"]}
    assert meta["progress"]["step"] == 6 and meta["progress"]["tokens"] > 0
    assert meta["settings"]["max_steps"] == 6
    rows = read_log(run)
    assert [r["valid_loss"] != "" for r in rows] == [False, False, True, False, False, True]

    # Starting a new run from it (multi-mode training from a pre-trained model).
    data = SyntheticData(n_batches=3)
    again = train(
        data, tiny(max_steps=1), tmp_path / "next", tokenizer_dir, init=run, progress=False
    )
    assert load_checkpoint(again).meta["init"] == str(run)


def test_a_log_of_an_older_layout_gains_the_new_columns_on_resume(tmp_path, tokenizer_dir):
    run = tmp_path / "run"
    train(SyntheticData(n_batches=3), tiny(max_steps=2), run, tokenizer_dir, progress=False)
    for log in (run / LOG_FILE, run / "step-000002" / LOG_FILE):  # as older versions wrote it
        rows = read_log(run)
        old = [c for c in rows[0] if c != "task_loss"]
        with log.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=old, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    (run / "step-000002" / "checksums.json").unlink()  # older versions wrote none
    train(SyntheticData(n_batches=3), tiny(max_steps=4), run, tokenizer_dir, resume=True,
          progress=False)  # fmt: skip
    rows = read_log(run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(r["task_loss"] == "" and float(r["loss"]) > 0 for r in rows)


def test_refuses_to_overwrite_a_run(tmp_path, tokenizer_dir):
    data = SyntheticData(n_batches=2)
    train(data, tiny(max_steps=1), tmp_path / "run", tokenizer_dir, progress=False)
    with pytest.raises(ValueError, match="resume"):
        train(data, tiny(max_steps=2), tmp_path / "run", tokenizer_dir, progress=False)
    # Resuming a finished run trains no further.
    final = train(
        data, tiny(max_steps=1), tmp_path / "run", tokenizer_dir, resume=True, progress=False
    )
    assert final.name == "step-000001"


def test_a_checkpoint_saved_before_the_first_log_row_resumes(tmp_path, tokenizer_dir):
    # Saving more often than logging: the first checkpoint has no log to copy yet.
    run = tmp_path / "run"
    settings = tiny(max_steps=4, save_every=1, log_every=3, keep_last=10)
    train(SyntheticData(n_batches=3), settings, run, tokenizer_dir, progress=False)
    assert not list(run.glob(".tmp-*"))
    assert not (run / "step-000001" / LOG_FILE).exists()
    assert (run / "step-000004" / LOG_FILE).is_file()
    # Resuming from the checkpoint without a log drops the rows logged after it.
    for later in ("step-000002", "step-000003", "step-000004"):
        shutil.rmtree(run / later)
    (run / LATEST_FILE).write_text("step-000001\n")
    train(SyntheticData(n_batches=3), settings, run, tokenizer_dir, resume=True, progress=False)
    assert [r["step"] for r in read_log(run)] == ["3", "4"]


# Each file of a checkpoint, damaged in turn: resuming falls back to the one before.
CHECKPOINT_FILES = [
    "model.safetensors",
    "config.json",
    "codemt.json",
    "state/optimizer.pt",
    "state/scheduler.pt",
    "state/rng-0.pt",
    "state/progress.json",
    "checksums.json",
]


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory, tokenizer_dir) -> Path:
    run = tmp_path_factory.mktemp("faults") / "run"
    settings = tiny(max_steps=4, save_every=2, keep_last=2)
    train(SyntheticData(n_batches=3), settings, run, tokenizer_dir, progress=False)
    assert (run / LATEST_FILE).read_text().strip() == "step-000004"
    return run


@pytest.mark.parametrize("name", CHECKPOINT_FILES)
@pytest.mark.parametrize("fault", ["truncated", "flipped", "missing"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous(
    two_checkpoints, tmp_path, name, fault, capsys
):
    run = tmp_path / "run"
    shutil.copytree(two_checkpoints, run)
    damaged = run / "step-000004" / name
    data = damaged.read_bytes()
    if fault == "truncated":
        damaged.write_bytes(data[: len(data) // 2])
    elif fault == "flipped":  # same size, one byte changed
        damaged.write_bytes(data[:-3] + bytes([data[-3] ^ 0x20]) + data[-2:])
    else:
        damaged.unlink()
    if fault == "missing" and name == "checksums.json":  # as an older checkpoint: loaded
        assert checkpoint_damage(run / "step-000004") is None
        assert resume_point(run, resume=True) == run / "step-000004"
        return
    assert checkpoint_damage(run / "step-000004") is not None
    assert checkpoint_damage(run / "step-000002") is None
    assert resume_point(run, resume=True) == run / "step-000002"
    said = capsys.readouterr().err
    assert "step-000004 is damaged" in said and "resuming from" in said
    assert str(run / "step-000002") in said


@pytest.mark.parametrize("latest", ["", "step-000009\n", "../elsewhere\n", None])
def test_an_empty_or_dangling_latest_falls_back_to_the_newest_intact(
    two_checkpoints, tmp_path, latest, capsys
):
    run = tmp_path / "run"
    shutil.copytree(two_checkpoints, run)
    if latest is None:
        (run / LATEST_FILE).unlink()
    else:
        (run / LATEST_FILE).write_text(latest)
    assert resume_point(run, resume=True) == run / "step-000004"
    assert "names no checkpoint" in capsys.readouterr().err
    with pytest.raises(ValueError, match="already holds checkpoints"):
        resume_point(run, resume=False)


def test_no_intact_checkpoint_is_an_error_naming_each(two_checkpoints, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_checkpoints, run)
    for step in ("step-000002", "step-000004"):
        path = run / step / "state" / "optimizer.pt"
        path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="no intact checkpoint") as error:
        resume_point(run, resume=True)
    assert "step-000004 is damaged (state/optimizer.pt has 100 bytes" in str(error.value)
    assert "step-000002 is damaged" in str(error.value)


def test_a_checkpoint_without_a_checksum_list_is_checked_by_loading_it(two_checkpoints, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_checkpoints, run)
    for step in ("step-000002", "step-000004"):
        (run / step / "checksums.json").unlink()
    assert checkpoint_damage(run / "step-000004") is None
    path = run / "step-000004" / "state" / "rng-0.pt"
    path.write_bytes(path.read_bytes()[:50])
    assert checkpoint_damage(run / "step-000004").startswith("state/rng-0.pt does not load")
    assert resume_point(run, resume=True) == run / "step-000002"


def test_a_damaged_checkpoint_resumes_from_the_previous_and_trains_on(
    two_checkpoints, tmp_path, tokenizer_dir
):
    run = tmp_path / "run"
    shutil.copytree(two_checkpoints, run)
    weights = run / "step-000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    settings = tiny(max_steps=5, save_every=2, keep_last=2)
    final = train(
        SyntheticData(n_batches=3), settings, run, tokenizer_dir, resume=True, progress=False
    )
    assert final == run / "step-000005" and checkpoint_damage(final) is None
    assert [r["step"] for r in read_log(run)] == ["1", "2", "3", "4", "5"]


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "codemt.json"])
def test_loading_a_damaged_checkpoint_names_the_file(two_checkpoints, tmp_path, name):
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(two_checkpoints / "step-000004", checkpoint)
    data = (checkpoint / name).read_bytes()
    (checkpoint / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"{checkpoint / name}: damaged or unreadable"):
        load_checkpoint(checkpoint)
