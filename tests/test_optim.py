"""codemt's Adafactor makes transformers' updates, and their checkpoints resume in each other."""

import copy

import pytest
import torch

from codemt.optim import Adafactor

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


def test_a_checkpoint_of_either_resumes_in_the_other():
    theirs = _model()
    reference = _reference(theirs)
    _train(theirs, reference, steps=3)
    ours = copy.deepcopy(theirs)
    optimizer = Adafactor(_groups(ours), lr=1e-2)
    optimizer.load_state_dict(copy.deepcopy(reference.state_dict()))  # as from a file
    _train(theirs, reference, steps=3, start=3)
    _train(ours, optimizer, steps=3, start=3)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="positive learning rate"):
        Adafactor(_model().parameters(), lr=0.0)
