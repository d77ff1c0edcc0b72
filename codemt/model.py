"""The model: a T5 v1.1-style encoder-decoder in named sizes, and its checkpoint folder.

PyMT5 is an encoder-decoder transformer; we use Hugging Face's `T5ForConditionalGeneration`
in its v1.1 form: gated-GELU feed-forward layers, relative position bias (no learned
absolute positions, which suits the 2,200-token context) and an output projection that is
not tied to the input embedding (encoder and decoder still share that input embedding).

A checkpoint is one folder that needs nothing else to load::

    model.safetensors, config.json    the weights and T5 config (AutoModelForSeq2SeqLM opens them)
    generation_config.json            written by transformers
    (or weights.int8.safetensors      a shipped model's weights in 8 bits, see `INT8_WEIGHTS`)
    tokenizer.json, ..., words.txt    the tokenizer trained with and its docstring word list
    codemt.json                       our config: preset, stage, modes, settings, progress
    train_log.csv, state/             written by `codemt.training` (training log, resume state)

Heavy imports (torch, transformers) stay inside functions so that `codemt --help` is fast.
"""

from __future__ import annotations

import contextlib
import copy
import json
import platform
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from codemt import __version__
from codemt.tokenizer import TOKENIZER_FILES
from codemt.words import WORDS_FILE

if TYPE_CHECKING:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

CODEMT_FILE = "codemt.json"
# A run folder holds step-NNNNNN checkpoints and this file naming the newest one.
LATEST_FILE = "latest"
BEST_FILE = "best"  # in a run folder trained with `select_on`: the checkpoint it stands for
# A shipped model may store its matrices in 8 bits: each row as int8 times one float32
# scale (its largest magnitude / 127), the rest (norms, position biases) in float16. Half
# the size of float16, so a model twice as large fits the same budget in git; loading
# computes in float32 again. transformers cannot open this file: `load_checkpoint` can.
INT8_WEIGHTS = "weights.int8.safetensors"
_SCALE = ".int8_scale"  # suffix of a quantized matrix's row scales
# Parameter names of a PointerT5's copy mechanism, which a plain T5 checkpoint lacks.
POINTER_PARTS = ("pointer_query.", "pointer_key.", "copy_gate.")


class Preset(NamedTuple):
    """The shape of a model size, its nominal parameter count and training defaults.

    `vocab` is the vocabulary the nominal size is counted with; a real model takes its
    vocabulary size from its tokenizer, so its exact count moves by 2 * d_model per token
    of difference (input embedding + untied output projection). `context` is the longest
    source or target, in tokens, that the data layer should build for this size.
    """

    d_model: int
    d_ff: int
    encoder_layers: int
    decoder_layers: int
    heads: int
    d_kv: int
    vocab: int
    context: int
    nominal_params: float
    lr: float
    warmup_steps: int


# One line of numbers per size. Vocabularies: 32k, the tokenizer's default, except 16k for
# `small`, whose 32k-vocabulary embeddings alone would be 17M parameters (26M in all); a
# 16k tokenizer also suits the small corpora a CPU model is trained on. The paper's exact
# shape is not in our sources; `pymt5` matches its size and context. Learning rates: the
# paper's 9.1875e-5 at 374M parameters with 5,000 warm-up steps; smaller models tolerate
# (and, to learn within CPU budgets, need) larger rates, roughly inversely to width.
PRESETS: dict[str, Preset] = {
    # d_model d_ff enc dec heads d_kv vocab context nominal lr warmup
    "tiny": Preset(64, 128, 2, 2, 4, 16, 1024, 256, 0.33e6, 1e-3, 100),  # unit tests
    "small": Preset(256, 1024, 4, 4, 4, 64, 16384, 512, 18e6, 5e-4, 1000),  # CPU default
    "base": Preset(384, 1536, 6, 6, 6, 64, 32768, 1024, 57e6, 3e-4, 2000),  # CodeT5-small class
    "large": Preset(
        768, 1536, 12, 12, 12, 64, 32768, 2048, 220e6, 1.5e-4, 4000
    ),  # CodeT5-base class
    "pymt5": Preset(1024, 2048, 12, 12, 16, 64, 32768, 2200, 374e6, 9.1875e-5, 5000),  # the paper's
}


def get_preset(name: str) -> Preset:
    """The preset called `name`, or a ValueError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def t5_config(
    preset: str,
    vocab_size: int,
    pad_id: int,
    eos_id: int,
    decoder_start_id: int,
    dropout: float = 0.0,
) -> T5Config:
    """The transformers config of `preset` with the tokenizer's vocabulary and special ids."""
    from transformers import T5Config

    p = get_preset(preset)
    return T5Config(
        vocab_size=vocab_size,
        d_model=p.d_model,
        d_ff=p.d_ff,
        num_layers=p.encoder_layers,
        num_decoder_layers=p.decoder_layers,
        num_heads=p.heads,
        d_kv=p.d_kv,
        feed_forward_proj="gated-gelu",
        # transformers 4 reads this literally; transformers 5 takes it to mean "do not
        # rescale decoder outputs" (v1.1 behaviour) and ties everything, see below.
        tie_word_embeddings=False,
        dropout_rate=dropout,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        decoder_start_token_id=decoder_start_id,
    )


def build_model(
    preset: str,
    vocab_size: int,
    pad_id: int,
    eos_id: int,
    decoder_start_id: int,
    *,
    dropout: float = 0.0,
    copy_excluded_ids: Sequence[int] | None = None,
    device: str | torch.device | None = None,
) -> T5ForConditionalGeneration:
    """A freshly initialised model of `preset` (pass device="meta" to count without allocating).

    Dropout is 0 by default, as for pre-training on plenty of data; raise it to fine-tune
    on little. `copy_excluded_ids` (the special tokens' ids) makes it a `PointerT5`, which
    can copy any other source token (see `codemt.pointer`). Initialisation uses the global
    torch RNG: seed it first for reproducibility.
    """
    import torch
    from transformers import T5ForConditionalGeneration

    config = t5_config(preset, vocab_size, pad_id, eos_id, decoder_start_id, dropout)
    model_class = T5ForConditionalGeneration
    if copy_excluded_ids is not None:
        from codemt.pointer import PointerT5

        config.copy_excluded_ids = sorted(copy_excluded_ids)
        model_class = PointerT5
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = model_class(config)
        _untie_output_projection(model)
    return model


def has_pointer(config: Any) -> bool:
    """Whether a transformers config (or a config.json's dict) is a `PointerT5`'s."""
    if isinstance(config, dict):
        return config.get("copy_excluded_ids") is not None
    return getattr(config, "copy_excluded_ids", None) is not None


def with_pointer(
    model: T5ForConditionalGeneration, copy_excluded_ids: Sequence[int]
) -> T5ForConditionalGeneration:
    """`model` as a `PointerT5` with the same weights and a fresh pointer (a PointerT5 is
    returned as it is): fine-tunes a plain checkpoint into one that can copy."""
    from codemt.pointer import PointerT5

    if isinstance(model, PointerT5):
        return model
    config = copy.deepcopy(model.config)
    config.copy_excluded_ids = sorted(copy_excluded_ids)
    pointer = PointerT5(config)
    _untie_output_projection(pointer)
    missing, unexpected = pointer.load_state_dict(model.state_dict(), strict=False)
    fresh = {name for name, _ in pointer.named_parameters() if name.startswith(POINTER_PARTS)}
    if not set(missing) <= fresh or unexpected:
        raise ValueError(f"not a T5 model like ours: missing {missing}, unexpected {unexpected}")
    pointer.generation_config = copy.deepcopy(model.generation_config)
    return pointer.to(model.device).train(model.training)


def _untie_output_projection(model: T5ForConditionalGeneration) -> None:
    """Give the model an output projection of its own (T5 v1.1), whatever the transformers version.

    transformers 5 always ties `lm_head` to the input embedding at construction; a checkpoint
    whose `lm_head` differs from it is loaded untied. The projection is initialised with
    std d_model**-0.5 (fan-in scaling): the decoder's output is RMS-normalised, so the first
    logits have unit scale and the first loss is about ln(vocab); transformers 4's std of
    1.0 starts with logits of std sqrt(d_model) and a loss far above that.
    """
    import torch

    weight = model.shared.weight
    lm_head = torch.empty_like(weight)
    if lm_head.device.type != "meta":
        torch.nn.init.normal_(lm_head, std=model.config.d_model**-0.5)
    model.lm_head.weight = torch.nn.Parameter(lm_head)


# What `platform.machine()` calls an x86 CPU, the only kind torch checks for bfloat16.
_X86 = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})


def cpu_has_bf16() -> bool:
    """Whether this machine's CPU multiplies in bfloat16 natively (AVX-512 BF16 or AMX).

    There, bfloat16 trains (autocast: docs/training-speed.md) and generates
    (`codemt.backends`' torch-bf16) faster than float32; elsewhere oneDNN emulates
    bfloat16, which is slower than float32. Reads the CPU's flags where Linux lists them
    (`select_backend` asks in every command, and importing torch to answer takes a second
    or two), else asks PyTorch's own CPU checks (x86 only; False where it lacks them).
    """
    if platform.machine().lower() not in _X86:
        return False  # torch's checks are x86's too
    flags = _linux_cpu_flags()
    if flags is not None:
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _linux_cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The x86 CPU's flags as Linux lists them; None where there is no such list."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return None


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied tensors counted once)."""
    return sum(p.numel() for p in model.parameters())


def preset_parameters(preset: str, vocab_size: int | None = None) -> int:
    """Exact parameter count of `preset` at `vocab_size` (default: the preset's), built on the
    meta device so that no memory is allocated."""
    vocab = vocab_size or get_preset(preset).vocab
    return count_parameters(build_model(preset, vocab, 0, 1, 0, device="meta"))


def int8_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights for `INT8_WEIGHTS`: matrices row-quantized, the rest float16;
    each tensor once, under its first name (T5's embeddings are shared)."""
    import torch

    weights: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        tensor = tensor.detach().float().cpu()
        # Matrices: the weights that hold the size. Small ones (relative position biases,
        # 32 x heads) stay float16, where 8 bits would save nothing worth their error.
        if tensor.dim() == 2 and tensor.numel() >= 4096:
            scale = tensor.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
            weights[name] = (tensor / scale).round().clamp(-127, 127).to(torch.int8)
            weights[name + _SCALE] = scale
        else:
            weights[name] = tensor.half()
    return weights


def _load_int8_weights(model: torch.nn.Module, path: Path) -> None:
    """Load `INT8_WEIGHTS` into `model` in float32 (tied names from the tensor stored)."""
    import torch
    from safetensors.torch import load_file

    stored = load_file(path)
    redo = "export the model again (codemt recipe, or write_model(..., int8=True))"
    state = {}
    for name, tensor in stored.items():
        if name.endswith(_SCALE):
            if stored.get(name.removesuffix(_SCALE), torch.empty(0)).dtype != torch.int8:
                raise ValueError(f"{path}: {name} scales no 8-bit weight; {redo}")
            continue
        if tensor.dtype == torch.int8:
            if name + _SCALE not in stored:
                raise ValueError(f"{path}: the 8-bit weight {name} has no scales; {redo}")
            tensor = tensor * stored[name + _SCALE]  # float32, as the scales
        state[name] = tensor.float()
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # a shape that is not config.json's
        raise ValueError(f"{path}: the weights do not fit config.json: {error}") from None
    # A name missing from the file is fine where it shares its tensor with a stored one.
    current = model.state_dict()
    stored_tensors = {current[name].data_ptr() for name in state if name in current}
    untouched = sorted(n for n in missing if current[n].data_ptr() not in stored_tensors)
    if unexpected or untouched:
        raise ValueError(
            f"{path}: the weights do not fit the model of config.json (missing "
            f"{untouched[:3]}, unexpected {sorted(unexpected)[:3]}); keep the config.json "
            f"they were written with, or {redo}"
        )


def tokenizer_files(folder: Path) -> list[str]:
    """The names of the files a checkpoint takes from a tokenizer folder: the tokenizer's
    and the word list (`codemt.words`), those present. Only those: a checkpoint folder
    given as the tokenizer's must not lend its weights too."""
    return [name for name in (*TOKENIZER_FILES, WORDS_FILE) if (Path(folder) / name).is_file()]


def write_model(
    model: T5ForConditionalGeneration,
    folder: Path,
    tokenizer_dir: Path,
    meta: dict[str, Any],
    *,
    int8: bool = False,
) -> None:
    """Write weights, config, tokenizer and `codemt.json` into `folder` (created if needed).

    `meta` is our own config (preset, stage, modes, settings, progress); the codemt version
    is added. `int8`: the weights as `INT8_WEIGHTS` (a model to ship, not to train on).
    Not atomic by itself: `codemt.training` writes into a temporary folder and renames.
    """
    folder = Path(folder)
    tokenizer_dir = Path(tokenizer_dir)
    if not tokenizer_dir.is_dir():
        raise FileNotFoundError(f"{tokenizer_dir}: no tokenizer folder here")
    folder.mkdir(parents=True, exist_ok=True)
    if int8:
        from safetensors.torch import save_file

        model.config.save_pretrained(folder)
        model.generation_config.save_pretrained(folder)
        save_file(int8_weights(model), folder / INT8_WEIGHTS, metadata={"format": "pt"})
    else:
        with _quiet_transformers():
            model.save_pretrained(folder, safe_serialization=True)
    for name in tokenizer_files(tokenizer_dir):
        shutil.copy2(tokenizer_dir / name, folder / name)
    meta = {"codemt_version": __version__, **meta}
    (folder / CODEMT_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def resolve_checkpoint(path: Path | str, newest: bool = False) -> Path:
    """The checkpoint folder `path` names: itself, or a run folder's best checkpoint (where
    training selected one, see `TrainSettings.select_on`), else (or with `newest`) its newest."""
    path = Path(path)
    for pointer in (LATEST_FILE,) if newest else (BEST_FILE, LATEST_FILE):
        if (path / pointer).is_file():
            named = path / (path / pointer).read_text(encoding="utf-8").strip()
            if named.is_dir():  # else (a best removed by hand) the next pointer
                path = named
                break
    if not (path / "config.json").is_file() or not (path / CODEMT_FILE).is_file():
        raise FileNotFoundError(
            f"{path}: not a codemt checkpoint (config.json and {CODEMT_FILE} expected); "
            f"give a checkpoint folder or a training run folder written by `codemt train`"
        )
    return path


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (in eval mode) and our config from `codemt.json`."""

    path: Path
    model: T5ForConditionalGeneration
    meta: dict[str, Any]

    @property
    def tokenizer_path(self) -> Path:
        """The checkpoint's `tokenizer.json`."""
        return self.path / "tokenizer.json"


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars (they would cut through the training bar) and its
    warning, on every load under transformers 5, that lm_head is "not tied although the
    config says so": that is exactly the T5 v1.1 layout we want."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def load_checkpoint(path: Path | str, *, dropout: float | None = None) -> Checkpoint:
    """Load a checkpoint folder (or the one a run folder stands for: its best, else newest) on
    the CPU.

    `dropout`, when given, replaces the dropout rate the checkpoint was trained with.
    """
    from transformers import T5Config, T5ForConditionalGeneration

    path = resolve_checkpoint(path)
    overrides = {} if dropout is None else {"dropout_rate": dropout}
    reading = path / "config.json"
    try:
        config = T5Config.from_pretrained(path, **overrides)
        model_class = T5ForConditionalGeneration
        if has_pointer(config):
            from codemt.pointer import PointerT5

            model_class = PointerT5
        with _quiet_transformers():
            if (path / INT8_WEIGHTS).is_file():
                reading = path / INT8_WEIGHTS
                model = model_class(config)
                _untie_output_projection(model)
                _load_int8_weights(model, path / INT8_WEIGHTS)
            else:
                reading = path / "model.safetensors"
                model = model_class.from_pretrained(path, config=config)
        reading = path / CODEMT_FILE
        meta = json.loads(reading.read_text(encoding="utf-8"))
    except Exception as error:  # noqa: BLE001 - whatever the library raises, name the file
        raise ValueError(
            f"{reading}: damaged or unreadable ({type(error).__name__}: {error}); copy the "
            f"checkpoint again, or use another (a training run keeps its previous ones)"
        ) from error
    assert model.lm_head.weight is not model.shared.weight, f"{path}: lm_head loaded tied"
    # Shipped models may be stored in float16 or int8 to be small; compute in float32.
    model = model.float()
    return Checkpoint(path=path, model=model.eval(), meta=meta)


def format_presets(vocab_size: int | None = None) -> str:
    """A table of every preset with its shape and exact parameter count."""
    header = f"{'preset':<7} {'params':>12} {'nominal':>8} {'d_model':>7} {'d_ff':>5} {'layers':>6} {'heads':>5} {'d_kv':>4} {'vocab':>6} {'context':>7} {'lr':>10} {'warmup':>6}"
    lines = [header]
    for name, p in PRESETS.items():
        vocab = vocab_size or p.vocab
        n = preset_parameters(name, vocab)
        lines.append(
            f"{name:<7} {n:>12,} {f'{p.nominal_params / 1e6:.3g}M':>8} {p.d_model:>7} {p.d_ff:>5} "
            f"{f'{p.encoder_layers}+{p.decoder_layers}':>6} {p.heads:>5} {p.d_kv:>4} {vocab:>6} "
            f"{p.context:>7} {p.lr:>10.5g} {p.warmup_steps:>6}"
        )
    return "\n".join(lines)
