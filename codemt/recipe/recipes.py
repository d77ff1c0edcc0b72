"""What the default model is for each kind of hardware: model size, tokenizer, training
lengths, examples, batching and training settings (`RECIPES`). Why each value is what it
is, with the measurements that chose it: docs/default-model.md, "Why the recipes are set
as they are"."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

from codemt.data import BatchSettings
from codemt.examples import ExampleSettings
from codemt.model import get_preset
from codemt.training.config import TrainSettings

SOURCES = ("python:stdlib", "python:site-packages")


@dataclass(frozen=True)
class Recipe:
    """What the default model is for one kind of hardware.

    `train` holds the training settings of every stage, the model size (`preset`) among
    them, and its `max_tokens` is the multi-mode stage's token target; pre-training trains
    `pretrain_tokens` with the same settings (0 leaves that stage out).
    """

    vocab_size: int
    pretrain_tokens: int
    train: TrainSettings
    examples: ExampleSettings = field(default_factory=ExampleSettings)
    batching: BatchSettings = field(default_factory=BatchSettings)
    # Train/valid/test shares of the mined methods. Documented methods are what the model
    # lacks most; a twentieth of a corpus of installed packages still holds thousands of
    # docstrings to select and test on.
    split: tuple[float, float, float] = (0.9, 0.05, 0.05)

    def __post_init__(self) -> None:
        if not self.train.max_tokens or self.pretrain_tokens < 0:
            raise ValueError(
                "a recipe needs train settings with max_tokens (the multi-mode stage's target) "
                "and pretrain_tokens >= 0 (0: no pre-training)"
            )

    @property
    def multimode_tokens(self) -> int:
        """The multi-mode stage's token target."""
        return int(self.train.max_tokens or 0)

    @property
    def preset(self) -> str:
        """The model size."""
        return self.train.preset

    def record(self) -> dict[str, Any]:
        """What `OUT/recipe.json` records (as JSON reads it back): the model size, the
        tokenizer, the token targets, the split, and of the examples, batching and training
        settings the values that differ from their defaults."""
        defaults = TrainSettings(preset=self.preset, max_tokens=self.multimode_tokens)
        recorded = {
            "preset": self.preset,
            "vocab_size": self.vocab_size,
            "pretrain_tokens": self.pretrain_tokens,
            "multimode_tokens": self.multimode_tokens,
            "examples": _changed(self.examples, ExampleSettings()),
            "batching": _changed(self.batching, BatchSettings()),
            "train": _changed(self.train, defaults, leave=("preset", "max_tokens")),
            "split": list(self.split),
        }
        return json.loads(json.dumps(recorded))

    @classmethod
    def from_record(cls, recorded: dict[str, Any]) -> Recipe:
        """The recipe a `record` (this version's, or an earlier one's) describes."""
        train = dict(recorded.get("train", {}))
        if "betas" in train:
            train["betas"] = tuple(train["betas"])
        return cls(
            vocab_size=recorded["vocab_size"],
            pretrain_tokens=recorded["pretrain_tokens"],
            train=TrainSettings(
                preset=recorded["preset"], max_tokens=recorded["multimode_tokens"], **train
            ),
            examples=ExampleSettings(**recorded.get("examples", {})),
            batching=BatchSettings(**recorded.get("batching", {})),
            split=tuple(recorded.get("split", (0.9, 0.05, 0.05))),
        )

    def with_preset(self, preset: str) -> Recipe:
        """This recipe with another model size; a learning rate or warm-up that was the old
        size's default becomes the new size's."""
        old, new = get_preset(self.preset), get_preset(preset)
        train = replace(
            self.train,
            preset=preset,
            lr=new.lr if self.train.lr == old.lr else self.train.lr,
            warmup_steps=(
                new.warmup_steps
                if self.train.warmup_steps == old.warmup_steps
                else self.train.warmup_steps
            ),
        )
        return replace(self, train=train)

    def stage_settings(self, stage: str) -> TrainSettings:
        """The training settings of one stage ("pretrain" or "multimode"): the recipe's,
        up to its token target (selecting a checkpoint on a task is multi-mode training's)."""
        if stage == "pretrain":
            return replace(self.train, max_tokens=self.pretrain_tokens, select_on=None)
        return self.train


# Both recipes: short, information-dense sources (signature first, its names as words,
# then as much of the body as fits), the CodeXGLUE task weighted up, an 8k vocabulary (the
# output softmax is a small decoder's largest cost), no span-masking pre-training,
# Adafactor (AdamW's same-size steps blew up T5's residual stream), a copy mechanism, and
# the learning rate decaying linearly to 0 at the token target.
_DOCSTRING_WEIGHTED = {"signature+body->docstring": 10.0, "signature+docstring->body": 2.0}

RECIPES = {
    "cpu": Recipe(
        vocab_size=8192,
        pretrain_tokens=0,
        examples=ExampleSettings(
            max_source_tokens=128,
            max_target_tokens=96,
            summary_fraction=0.8,
            undocumented_share=0.2,
            name_words=True,
            mode_weights=_DOCSTRING_WEIGHTED,
        ),
        batching=BatchSettings(max_tokens=4096),
        train=TrainSettings(
            preset="small",
            max_tokens=60_000_000,
            optimizer="adafactor",
            lr=1e-2,
            warmup_steps=300,
            schedule="linear",
            eval_every=500,
            save_every=200,
            log_every=25,
            copy=True,
            # Where the CPU has bfloat16 instructions; `run_recipe` falls back to float32
            # on others, where bfloat16 is emulated and slower.
            mixed_precision="bf16",
        ),
    ),
    # One GPU: the same model and tokenizer (both fit the 60 MB that ships in git), longer
    # sources and targets, a quarter of the undocumented methods kept (so that the copy
    # that travels to the GPU machine fits its transfer limit), 64k-token batches, and the
    # checkpoint with the lowest docstring-task validation loss kept (`select_on`): longer
    # training made bodies better but docstrings worse.
    "gpu": Recipe(
        vocab_size=8192,
        pretrain_tokens=0,
        examples=ExampleSettings(
            max_source_tokens=256,
            max_target_tokens=128,
            summary_fraction=0.8,
            undocumented_share=1.0,
            undocumented_kept=0.25,
            name_words=True,
            mode_weights=_DOCSTRING_WEIGHTED,
        ),
        batching=BatchSettings(max_tokens=65536, max_padding=0.2),
        train=TrainSettings(
            preset="small",
            max_tokens=86_000_000,
            optimizer="adafactor",
            lr=1e-2,
            warmup_steps=500,
            schedule="linear",
            eval_every=500,
            save_every=500,
            log_every=50,
            mixed_precision="bf16",
            select_on="signature+body->docstring",
            copy=True,
        ),
    ),
}


def _changed(settings: Any, defaults: Any, leave: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of a settings dataclass whose values differ from `defaults`'."""
    return {
        f.name: getattr(settings, f.name)
        for f in fields(settings)
        if f.name not in leave and getattr(settings, f.name) != getattr(defaults, f.name)
    }


def pick_hardware(choice: str) -> str:
    """`cpu` or `gpu`: the one asked for, or what this machine has."""
    if choice != "auto":
        return choice
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"
