"""codemt's Adafactor makes transformers' updates, and their checkpoints resume in each other."""

import copy

import pytest
import torch

from codemt.training.optim import Adafactor

transformers = pytest.importorskip("transformers")


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Embedding(50, 8), torch.nn.Linear(8, 16), torch.nn.LayerNorm(16)
    )


def _groups(model: torch.nn.Module) -> list[dict]:
    # As training builds them: matrices decayed, vectors not.
    return [
        {"params": [p for p in model.parameters() if p.ndim >= 2], "weight_decay": 0.01},
        {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0},
    ]


def _train(model, optimizer, steps: int, start: int = 0) -> None:
    for step in range(start, start + steps):
        generator = torch.Generator().manual_seed(step)
        ids = torch.randint(0, 50, (4, 6), generator=generator)
        for group in optimizer.param_groups:  # a changing schedule, as LambdaLR sets it
            group["lr"] = 1e-2 / (1 + step)
        loss = model(ids).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _reference(model):
    return transformers.optimization.Adafactor(
        _groups(model), lr=1e-2, scale_parameter=True, relative_step=False, warmup_init=False
    )


def test_updates_match_transformers_adafactor():
    ours, theirs = _model(), _model()
    _train(ours, Adafactor(_groups(ours), lr=1e-2), steps=8)
    _train(theirs, _reference(theirs), steps=8)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert not torch.equal(next(ours.parameters()), next(_model().parameters()))


@pytest.mark.parametrize("first", ["transformers", "codemt"])
def test_a_checkpoint_of_either_resumes_in_the_other(first):
    def make(model, kind):
        return _reference(model) if kind == "transformers" else Adafactor(_groups(model), lr=1e-2)

    second = "codemt" if first == "transformers" else "transformers"
    model = _model()
    before = make(model, first)
    _train(model, before, steps=3)
    resumed = copy.deepcopy(model)
    after = make(resumed, second)
    after.load_state_dict(copy.deepcopy(before.state_dict()))  # as from a file
    _train(model, before, steps=3, start=3)
    _train(resumed, after, steps=3, start=3)
    for a, b in zip(resumed.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_bfloat16_weights_keep_float32_moments_also_after_a_resume():
    model = _model().to(torch.bfloat16)
    optimizer = Adafactor(_groups(model), lr=1e-2)
    reference_model = copy.deepcopy(model)
    reference = _reference(reference_model)
    _train(model, optimizer, steps=2)
    _train(reference_model, reference, steps=2)
    for a, b in zip(model.parameters(), reference_model.parameters(), strict=True):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a, b)
    resumed = Adafactor(_groups(model), lr=1e-2)
    resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # casts to bfloat16
    _train(model, resumed, steps=1, start=2)
    moments = [v for state in resumed.state.values() for k, v in state.items() if "exp" in k]
    assert moments and all(m.dtype == torch.float32 for m in moments)


def test_a_transformers_state_with_other_settings_is_refused():
    model = _model()
    relative = transformers.optimization.Adafactor(model.parameters(), lr=None)  # relative_step
    _train(model, relative, steps=1)
    optimizer = Adafactor(model.parameters(), lr=1e-2)
    optimizer.load_state_dict(copy.deepcopy(relative.state_dict()))
    with pytest.raises(ValueError, match="relative_step"):
        _train(model, optimizer, steps=1, start=1)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="positive learning rate"):
        Adafactor(_model().parameters(), lr=0.0)
