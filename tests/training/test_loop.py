"""Tests of the training loop: settings, the learning-rate schedule, a tiny model that
overfits one batch, exact resume after SIGTERM, model selection, and data parallelism.

Batches are synthetic random token ids. Run as a script (under torchrun) this file trains
the data-parallel half of `test_two_processes_match_one`.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from codemt.model import load_checkpoint, resolve_checkpoint
from codemt.tokenizer import TokenizerSettings, save_tokenizer, train_tokenizer
from codemt.training.checkpoint import LOG_FILE
from codemt.training.config import TrainSettings, decay_steps, learning_rate
from codemt.training.loop import TrainingInterrupted, _real_tokens, train

ID_LIMIT = 500  # the batches' ids are below this; the tokenizer must have as many


TEXTS = [
    "def add(a, b):\n    '''Return the sum of a and b.'''\n    return a + b\n",
    "class Stack:\n    def push(self, item):\n        self.items.append(item)\n",
    "for i in range(10):\n\tif i % 2 == 0:\n\t\tprint(i)\n",
] * 20


class SyntheticData:
    """Random token ids in batches of varying shapes, the same for a given seed and epoch.

    Rank r of W gets batches r, r + W, r + 2W, ... of the single-process order, so W
    processes see together what one process sees in W consecutive batches.
    """

    def __init__(
        self, n_batches: int, seed: int = 0, batch_size: int = 4, src: int = 12, tgt: int = 8
    ):
        self.n_batches, self.seed = n_batches, seed
        self.batch_size, self.src, self.tgt = batch_size, src, tgt

    def _epoch(self, epoch: int) -> list[dict[str, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        out = []
        for _ in range(self.n_batches):
            src_len = torch.randint(2, self.src + 1, (self.batch_size,), generator=g)
            tgt_len = torch.randint(2, self.tgt + 1, (self.batch_size,), generator=g)
            s, t = int(src_len.max()), int(tgt_len.max())
            attention_mask = (torch.arange(s) < src_len[:, None]).long()  # (batch, src_len)
            input_ids = (
                torch.randint(3, ID_LIMIT, (self.batch_size, s), generator=g) * attention_mask
            )
            labels = torch.randint(
                3, ID_LIMIT, (self.batch_size, t), generator=g
            )  # (batch, tgt_len)
            labels[torch.arange(t) >= tgt_len[:, None]] = -100
            out.append({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels})
        return out

    def batches(
        self, epoch: int, *, rank: int = 0, world_size: int = 1, start: int = 0
    ) -> Iterator[dict[str, torch.Tensor]]:
        yield from self._epoch(epoch)[rank::world_size][start:]

    def num_batches(self, epoch: int, *, rank: int = 0, world_size: int = 1) -> int:
        return len(range(rank, self.n_batches, world_size))

    def tokens(self, epoch: int) -> int:
        return sum(_real_tokens(batch) for batch in self._epoch(epoch))


class OneBatch:
    """The same single batch in every epoch."""

    def __init__(self, data: SyntheticData):
        self.batch = next(data.batches(0))

    def batches(self, epoch: int, **kwargs) -> Iterator[dict[str, torch.Tensor]]:
        yield from [self.batch][kwargs.get("start", 0) :]

    def num_batches(self, epoch: int, **kwargs) -> int:
        return 1


class SignalAfter:
    """Wraps data and sends this process SIGTERM when it hands out its `n`-th batch."""

    def __init__(self, data: SyntheticData, n: int):
        self.data, self.n, self.given = data, n, 0

    def batches(self, epoch: int, **kwargs) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self.data.batches(epoch, **kwargs):
            self.given += 1
            if self.given == self.n:
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch

    def num_batches(self, epoch: int, **kwargs) -> int:
        return self.data.num_batches(epoch, **kwargs)

    def tokens(self, epoch: int) -> int:
        return self.data.tokens(epoch)


class SlowData:
    """Wraps data and takes `seconds` to hand out each batch, as an input-bound loop does."""

    def __init__(self, data: SyntheticData, seconds: float):
        self.data, self.seconds = data, seconds

    def batches(self, epoch: int, **kwargs) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self.data.batches(epoch, **kwargs):
            time.sleep(self.seconds)
            yield batch

    def num_batches(self, epoch: int, **kwargs) -> int:
        return self.data.num_batches(epoch, **kwargs)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def save_tiny_tokenizer(out: Path) -> Path:
    """A tokenizer with at least ID_LIMIT ids (BPE stops short of 640 on so little text)."""
    tok = train_tokenizer(TEXTS, TokenizerSettings(vocab_size=640))
    assert tok.get_vocab_size() >= ID_LIMIT
    save_tokenizer(tok, out)
    return out


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    return save_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def tiny(**overrides) -> TrainSettings:
    base = {"preset": "tiny", "warmup_steps": 5, "log_every": 1, "eval_every": 0, "save_every": 0}
    return TrainSettings(**(base | overrides))


def read_log(run: Path) -> list[dict[str, str]]:
    with (run / LOG_FILE).open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def column(rows: list[dict[str, str]], name: str) -> list[float]:
    return [float(r[name]) for r in rows]


def test_settings_resolve_preset_defaults_and_reject_bad_values():
    assert TrainSettings(preset="pymt5", max_steps=1).lr == 9.1875e-5
    assert TrainSettings(preset="pymt5", max_steps=1).warmup_steps == 5000
    assert TrainSettings(preset="tiny", lr=0.01, max_steps=1).lr == 0.01
    bad = [
        {"preset": "huge", "max_steps": 1},
        {"max_steps": None},  # no limit at all
        {"max_steps": 0},
        {"schedule": "cosine", "max_steps": None, "max_time": 60},
        {"schedule": "step", "max_steps": 1},
        {"optimizer": "sgd", "max_steps": 1},
        {"mixed_precision": "fp8", "max_steps": 1},
        {"grad_accum": 0, "max_steps": 1},
        {"warmup_steps": 0, "max_steps": 1},
        {"betas": (0.9, 1.5), "max_steps": 1},
        {"lr": -1.0, "max_steps": 1},
        {"dropout": 1.0, "max_steps": 1},
        {"copy_lr_scale": 0.0, "copy": True, "max_steps": 1},
        {"copy_lr_scale": 10.0, "max_steps": 1},  # without copy
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            TrainSettings(**kwargs)


def test_inverse_sqrt_schedule_matches_its_formula():
    s = TrainSettings(preset="tiny", lr=2e-3, warmup_steps=100, max_steps=1)
    for step in (1, 2, 50, 99):
        assert learning_rate(step, s) == pytest.approx(2e-3 * step / 100)
    for step in (100, 101, 400, 10_000, 397_000):
        assert learning_rate(step, s) == pytest.approx(2e-3 * math.sqrt(100 / step))


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_decaying_schedules_peak_after_warmup_and_reach_zero_after_max_steps(schedule):
    s = TrainSettings(preset="tiny", lr=1.0, warmup_steps=10, max_steps=100, schedule=schedule)
    rates = [learning_rate(step, s) for step in range(1, 102)]
    assert rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:], strict=False))
    assert rates[99] > 0 and rates[100] == pytest.approx(0.0)


def test_a_decaying_schedule_without_max_steps_reaches_zero_at_max_tokens(tmp_path, tokenizer_dir):
    data = SyntheticData(n_batches=4)
    settings = tiny(max_tokens=3 * data.tokens(0), schedule="linear", warmup_steps=2)
    assert decay_steps(settings, data) == 12  # three epochs of four batches
    assert decay_steps(replace(settings, grad_accum=2), data) == 6
    assert decay_steps(replace(settings, schedule="inverse_sqrt"), data) is None
    train(data, settings, tmp_path / "run", tokenizer_dir, progress=False)
    rates = column(read_log(tmp_path / "run"), "lr")
    # Epochs differ a little in tokens, so the run ends within a step of the estimate,
    # its learning rate all but decayed.
    assert abs(len(rates) - 12) <= 1
    assert rates == pytest.approx(
        [learning_rate(i, settings, 12) for i in range(1, len(rates) + 1)]
    )
    assert rates[1] == max(rates) and rates[-1] <= 2 / 11 * rates[1]


def test_a_schedule_ending_at_max_tokens_resumes_exactly(tmp_path, tokenizer_dir):
    data = SyntheticData(n_batches=4)
    settings = tiny(max_tokens=2 * data.tokens(0), schedule="cosine", warmup_steps=2)
    train(data, settings, tmp_path / "straight", tokenizer_dir, progress=False)
    with pytest.raises(TrainingInterrupted):
        train(SignalAfter(data, 5), settings, tmp_path / "resumed", tokenizer_dir, progress=False)
    train(data, settings, tmp_path / "resumed", tokenizer_dir, resume=True, progress=False)
    a, b = read_log(tmp_path / "straight"), read_log(tmp_path / "resumed")
    assert len(a) == len(b) and column(a, "lr") == pytest.approx(column(b, "lr"), rel=1e-9)


def test_a_schedule_ending_at_max_tokens_refuses_what_it_cannot_reckon():
    data = SyntheticData(n_batches=4)
    with pytest.raises(ValueError, match="within the 20 warm-up steps"):
        decay_steps(tiny(max_tokens=data.tokens(0), schedule="linear", warmup_steps=20), data)
    with pytest.raises(ValueError, match="set max_steps"):
        decay_steps(tiny(max_tokens=1000, schedule="linear"), OneBatch(data))
    # A total that ends right after the warm-up decays without dividing by zero.
    assert learning_rate(5, tiny(max_steps=4, schedule="linear", warmup_steps=5)) == 0.0


@pytest.mark.parametrize("optimizer, lr", [("adamw", 3e-3), ("adafactor", 3e-2)])
def test_tiny_model_overfits_one_batch(tmp_path, tokenizer_dir, optimizer, lr):
    data = OneBatch(SyntheticData(n_batches=1, batch_size=4, src=8, tgt=6))
    settings = tiny(optimizer=optimizer, lr=lr, warmup_steps=10, max_steps=100, weight_decay=0.0)
    train(data, settings, tmp_path / "run", tokenizer_dir, progress=False)
    losses = column(read_log(tmp_path / "run"), "loss")
    assert losses[0] > 5.0  # about ln(vocabulary size) = 6.4 at the start
    assert losses[-1] < 0.05, losses


def test_exact_resume_after_sigterm(tmp_path, tokenizer_dir):
    # Dropout on, so that resuming must restore the RNG too; grad_accum 2 and a signal on an
    # odd batch, so that the stop waits for the end of an accumulation.
    data = SyntheticData(n_batches=5)
    settings = tiny(max_steps=8, grad_accum=2, dropout=0.1)
    straight = train(data, settings, tmp_path / "straight", tokenizer_dir, progress=False)

    with pytest.raises(TrainingInterrupted) as interrupted:
        train(SignalAfter(data, 7), settings, tmp_path / "resumed", tokenizer_dir, progress=False)
    stopped = interrupted.value.checkpoint
    assert stopped.name == "step-000004"  # batch 7 is half of step 4, which is finished
    assert interrupted.value.signal_name == "SIGTERM" and stopped.is_dir()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    resumed = train(
        data, settings, tmp_path / "resumed", tokenizer_dir, resume=True, progress=False
    )

    a, b = read_log(tmp_path / "straight"), read_log(tmp_path / "resumed")
    assert [r["step"] for r in b] == [str(i) for i in range(1, 9)]
    assert [r["tokens"] for r in a] == [r["tokens"] for r in b]
    assert column(a, "loss") == pytest.approx(column(b, "loss"), rel=1e-6, abs=0)
    assert column(b, "lr") == pytest.approx([learning_rate(i, settings) for i in range(1, 9)])
    weights_a = load_file(straight / "model.safetensors")
    weights_b = load_file(resumed / "model.safetensors")
    for name, tensor in weights_a.items():
        torch.testing.assert_close(weights_b[name], tensor, rtol=1e-6, atol=1e-7)


def test_a_resume_takes_the_optimiser_settings_of_its_call(tmp_path, tokenizer_dir):
    data = SyntheticData(n_batches=3)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(SignalAfter(data, 3), tiny(max_steps=6), run, tokenizer_dir, progress=False)
    other = tiny(max_steps=6, lr=2 * tiny(max_steps=6).lr, weight_decay=0.5)
    train(data, other, run, tokenizer_dir, resume=True, progress=False)
    rates = column(read_log(run), "lr")
    assert rates[3:] == pytest.approx([learning_rate(i, other) for i in (4, 5, 6)])
    # The weight decay too: the checkpoint's optimiser state holds its own.
    state = torch.load(resolve_checkpoint(run) / "state" / "optimizer.pt", weights_only=True)
    assert [g["weight_decay"] for g in state["param_groups"]] == [0.5, 0.0]


def test_the_copy_mechanism_trains_at_its_own_learning_rate(tmp_path, tokenizer_dir):
    from codemt.model import POINTER_PARTS, build_model, write_model
    from codemt.tokenizer import load_tokenizer

    vocab = load_tokenizer(tokenizer_dir).get_vocab_size()
    torch.manual_seed(0)
    start = tmp_path / "start"
    model = build_model("tiny", vocab, 0, 1, 0, copy_excluded_ids=[0, 1])
    write_model(model, start, tokenizer_dir, {"preset": "tiny"})
    before = load_file(start / "model.safetensors")
    moved = {}
    for scale in (1.0, 10.0):
        # One step at the peak rate from the same weights on the same batch.
        settings = tiny(optimizer="adafactor", lr=1e-2, max_steps=1, warmup_steps=1,
                        weight_decay=0.0, copy=True, copy_lr_scale=scale)  # fmt: skip
        run = train(SyntheticData(n_batches=1), settings, tmp_path / str(scale), tokenizer_dir,
                    init=start, progress=False)  # fmt: skip
        after = load_file(run / "model.safetensors")
        moved[scale] = {name: after[name] - weight for name, weight in before.items()}
    # Adafactor moves a weight by lr * (its RMS) * (a normalised gradient): at scale 10 a
    # pointer weight moves 10 times as far as at scale 1, and the others alike.
    pointer = [name for name in before if name.startswith(POINTER_PARTS)]
    assert len(pointer) == 4  # query, key, gate weight and bias
    for name, step in moved[1.0].items():
        assert step.abs().max() > 0, name
        scale = 10.0 if name in pointer else 1.0
        torch.testing.assert_close(moved[10.0][name], scale * step, rtol=1e-4, atol=1e-7)


def test_a_resume_with_another_copy_group_layout_is_refused_clearly(tmp_path, tokenizer_dir):
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(SignalAfter(SyntheticData(n_batches=3), 2), tiny(max_steps=4, copy=True), run,
              tokenizer_dir, progress=False)  # fmt: skip
    faster = tiny(max_steps=4, copy=True, copy_lr_scale=10.0)
    with pytest.raises(ValueError, match="2 parameter groups, these settings make 4.*--init"):
        train(SyntheticData(n_batches=3), faster, run, tokenizer_dir, resume=True,
              progress=False)  # fmt: skip


def test_a_stop_signal_saves_without_evaluating_and_the_resumed_run_evaluates_at_its_end(
    tmp_path, tokenizer_dir
):
    settings = tiny(max_steps=6, eval_every=0)  # evaluated only at the end
    valid = SyntheticData(n_batches=2, seed=7)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(SignalAfter(SyntheticData(n_batches=3), 3), settings, run, tokenizer_dir,
              valid_data=valid, progress=False)  # fmt: skip
    assert [r["valid_loss"] for r in read_log(run)] == ["", "", ""]
    train(SyntheticData(n_batches=3), settings, run, tokenizer_dir, valid_data=valid,
          resume=True, progress=False)  # fmt: skip
    assert [r["valid_loss"] != "" for r in read_log(run)] == [False] * 5 + [True]


def test_selection_keeps_the_checkpoint_of_the_lowest_task_loss(
    tmp_path, tokenizer_dir, monkeypatch
):
    import codemt.training.loop as training

    task = SyntheticData(n_batches=1, seed=9)
    scripted = iter([3.0, 2.0, 2.5, 2.6, 2.7, 1.5])
    real_evaluate = training._Loop.evaluate
    monkeypatch.setattr(
        training._Loop,
        "evaluate",
        lambda self, data: next(scripted) if data is task else real_evaluate(self, data),
    )
    run = tmp_path / "run"
    settings = tiny(max_steps=4, eval_every=1, keep_last=1, select_on="signature+body->docstring")
    final = train(SyntheticData(n_batches=3), settings, run, tokenizer_dir, task_data=task,
                  progress=False)  # fmt: skip
    assert final == run / "step-000004"
    steps = sorted(p.name for p in run.glob("step-*"))
    assert steps == ["step-000002", "step-000004"]  # the best outlives keep_last
    assert (run / "best").read_text().strip() == "step-000002"
    assert load_checkpoint(run).path == run / "step-000002"  # a run folder stands for its best
    assert resolve_checkpoint(run, newest=True) == final
    assert [float(r["task_loss"]) for r in read_log(run)] == [3.0, 2.0, 2.5, 2.6]

    # A resumed run remembers the best so far; a lower loss moves it.
    longer = replace(settings, max_steps=6)
    train(SyntheticData(n_batches=3), longer, run, tokenizer_dir, task_data=task, resume=True,
          progress=False)  # fmt: skip
    assert (run / "best").read_text().strip() == "step-000006"
    assert sorted(p.name for p in run.glob("step-*")) == ["step-000006"]
    (run / "best").write_text("step-000002\n")  # a best removed by hand: the newest stands
    assert resolve_checkpoint(run) == run / "step-000006"

    # Resumed without selection: the run folder stands for its newest checkpoint again.
    (run / "best").write_text("step-000006\n")
    train(SyntheticData(n_batches=3), tiny(max_steps=7), run, tokenizer_dir, resume=True,
          progress=False)  # fmt: skip
    assert not (run / "best").exists() and resolve_checkpoint(run) == run / "step-000007"

    with pytest.raises(ValueError, match="select_on and task_data go together"):
        train(SyntheticData(n_batches=3), tiny(max_steps=1), tmp_path / "x", tokenizer_dir,
              task_data=task, progress=False)  # fmt: skip


def test_the_log_says_what_share_of_the_time_went_to_getting_batches(tmp_path, tokenizer_dir):
    settings = tiny(max_steps=4, log_every=2)
    train(SyntheticData(n_batches=4), settings, tmp_path / "fast", tokenizer_dir, progress=False)
    train(SlowData(SyntheticData(n_batches=4), 0.25), settings, tmp_path / "slow", tokenizer_dir,
          progress=False)  # fmt: skip
    fast, slow = (
        column(read_log(tmp_path / "fast"), "input_share"),
        column(read_log(tmp_path / "slow"), "input_share"),
    )
    assert len(fast) == len(slow) == 2
    assert all(0 <= share < 0.5 for share in fast) and all(0.5 < share <= 1 for share in slow)


def test_runs_of_two_precisions_in_one_process_and_emulated_bf16_is_warned_of(
    tmp_path, tokenizer_dir, monkeypatch, capsys
):
    import codemt.training.loop

    monkeypatch.setattr(codemt.training.loop, "cpu_has_bf16", lambda: False)
    data = SyntheticData(n_batches=2)
    train(data, tiny(max_steps=1, mixed_precision="bf16"), tmp_path / "bf16", tokenizer_dir,
          progress=False)  # fmt: skip
    assert "no bfloat16 instructions" in capsys.readouterr().err
    train(data, tiny(max_steps=1), tmp_path / "fp32", tokenizer_dir, progress=False)
    assert "no bfloat16" not in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, tokenizer_dir):
    """Two data-parallel processes with grad_accum 1 train exactly as one with grad_accum 2."""
    one = train(
        SyntheticData(n_batches=6), tiny(max_steps=6, grad_accum=2), tmp_path / "one", tokenizer_dir
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    command += [__file__, str(tmp_path / "two"), str(tokenizer_dir)]
    subprocess.run(command, check=True, env=env, timeout=300)
    a, b = read_log(tmp_path / "one"), read_log(tmp_path / "two")
    assert [r["tokens"] for r in a] == [r["tokens"] for r in b]
    assert column(a, "loss") == pytest.approx(column(b, "loss"), rel=1e-5)
    weights_a = load_file(one / "model.safetensors")
    weights_b = load_file(tmp_path / "two" / "step-000006" / "model.safetensors")
    for name, tensor in weights_a.items():
        torch.testing.assert_close(weights_b[name], tensor, rtol=1e-4, atol=1e-6)


if __name__ == "__main__":  # one process of the data-parallel run above
    train(
        SyntheticData(n_batches=6),
        tiny(max_steps=6),
        Path(sys.argv[1]),
        Path(sys.argv[2]),
        progress=False,
    )
