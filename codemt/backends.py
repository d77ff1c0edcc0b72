"""Generation backends: the PyTorch model and its CTranslate2 export behind one interface.

`Translator` builds model inputs and post-processes outputs; a backend only turns batches of
input ids into generated ids with scores::

    backend.generate(sources, n_return, settings)  # -> list[list[Hypothesis]], one list per source

With `words=True` a backend keeps docstrings in real words (`codemt.words`) where it can:
torch does when the model carries a word list; CTranslate2 has no per-step hook for it.

The backends, named in `BACKENDS`:

- `torch`: the checkpoint's `T5ForConditionalGeneration` and transformers' `generate`, in
  float32 on a CPU: the reference the others are measured against.
- `torch-bf16`: the same in bfloat16 with plain (eager) attention, on a CPU that computes
  in bfloat16 (AVX-512 BF16 or AMX): faster at nearly the same output.
- `torch-int8`: the same with its linear layers quantized to int8 as it loads.
- `ctranslate2`: a CTranslate2 export of the checkpoint (`codemt export`), several times
  faster on CPU, without torch in the process, and quantized to int8 a quarter of the
  weights' size (`benchmarks/ctranslate2_speed.py`). Its scores are on the same
  scale as torch's (beam search: the beam score; greedy and sampling: the mean token
  log-probability, </s> included), so syntax-aware selection treats both alike.

`select_backend(path, "auto")` picks ctranslate2 when it is installed and the model has an
export (the folder itself, or a `ctranslate2/` subfolder of the checkpoint), else torch-bf16
on a CPU with bfloat16 instructions, else torch.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from codemt.data import collate
from codemt.model import (
    CODEMT_FILE,
    count_parameters,
    cpu_has_bf16,
    load_checkpoint,
    resolve_checkpoint,
)
from codemt.words import WordConstraint, read_words

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer
    from transformers import T5ForConditionalGeneration

    from codemt.examples import Vocabulary
    from codemt.generation import GenerationSettings
    from codemt.words import WordConstraint

# The subfolder of a checkpoint that `auto` looks in for an export.
CTRANSLATE2_SUBFOLDER = "ctranslate2"
CTRANSLATE2_FORMAT = "ctranslate2"
INSTALL_HINT = "pip install 'codemt[fast]'"


class BackendUnavailable(ValueError):
    """The backend asked for cannot run this model: not installed, or the model lacks its form.

    A ValueError, so that commands which report bad input in one line report this too.
    """


class Hypothesis(NamedTuple):
    """One generated sequence: its token ids (no decoder start token, no </s>) and score."""

    ids: list[int]
    score: float


class Backend(Protocol):
    """What `Translator` needs from a backend.

    Each backend class also has `installed()`, `find(path)` (the folder it loads for a
    model path, or None) and `open(folder, tokenizer, vocab, device=, threads=)`.
    """

    name: str
    device: Any  # torch.device for torch, "cpu" or "cuda[:N]" for ctranslate2
    model: Any  # the library's model object

    @property
    def parameters(self) -> int:
        """Number of model parameters."""
        ...

    def generate(
        self,
        sources: list[list[int]],
        n_return: int,
        settings: GenerationSettings,
        *,
        words: bool = False,
    ) -> list[list[Hypothesis]]:
        """`n_return` hypotheses per source, best-scored first; `words`: in real words."""
        ...


def read_meta(folder: Path) -> dict[str, Any]:
    """A model folder's `codemt.json`."""
    return json.loads((Path(folder) / CODEMT_FILE).read_text(encoding="utf-8"))


def is_ctranslate2_export(folder: Path) -> bool:
    """Whether `folder` holds a CTranslate2 export written by `codemt export`."""
    meta_file = Path(folder) / CODEMT_FILE
    if not (Path(folder) / "model.bin").is_file() or not meta_file.is_file():
        return False
    return read_meta(folder).get("export", {}).get("format") == CTRANSLATE2_FORMAT


def _cut_at_eos(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos)] if eos in ids else ids


# ------------------------------------------------------------------ torch


class TorchBackend:
    """The checkpoint's PyTorch model, generating with transformers."""

    name = "torch"

    def __init__(
        self,
        model: T5ForConditionalGeneration,
        tokenizer: Tokenizer,
        vocab: Vocabulary,
        device: torch.device,
        words: frozenset[str] | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.device = device
        self.words = words  # the checkpoint's word list (codemt.words), if it has one
        self._constraint: WordConstraint | None = None
        # The encoder's outputs for the last batch generated, by source: scoring texts
        # for those sources (the project's summaries beside the beams) starts from them.
        self._encoded: dict[tuple[int, ...], torch.Tensor] = {}

    @staticmethod
    def installed() -> bool:
        """Whether torch and transformers can be imported."""
        return all(importlib.util.find_spec(m) for m in ("torch", "transformers"))

    @staticmethod
    def find(path: Path) -> Path | None:
        """The checkpoint `path` names (a run folder: its best, else newest checkpoint), or
        None for an export."""
        if is_ctranslate2_export(path):
            return None
        return resolve_checkpoint(path)

    @classmethod
    def open(
        cls,
        folder: Path,
        tokenizer: Tokenizer,
        vocab: Vocabulary,
        *,
        device: str | torch.device | None = None,
        threads: int | None = None,
    ) -> TorchBackend:
        """Load the checkpoint in `folder`, on the GPU when there is one unless told, and
        on a CPU as this backend converts it (`convert`); on a GPU a backend that converts
        it is the float torch backend.

        `threads` sets torch's thread count, which is process-wide.
        """
        import torch

        if threads:
            torch.set_num_threads(threads)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        kind = cls if device.type == "cpu" else TorchBackend
        model = kind.convert(load_checkpoint(folder).model)
        return kind(model, tokenizer, vocab, device, read_words(folder))

    @staticmethod
    def convert(model: T5ForConditionalGeneration) -> T5ForConditionalGeneration:
        """The float model as this backend runs it on a CPU (here: as it is)."""
        return model

    @property
    def parameters(self) -> int:
        """Number of model parameters."""
        return count_parameters(self.model)

    def generate(
        self,
        sources: list[list[int]],
        n_return: int,
        settings: GenerationSettings,
        *,
        words: bool = False,
    ) -> list[list[Hypothesis]]:
        """`n_return` hypotheses per source with transformers' `generate`; with `words`,
        in the words of the model's word list and of each source (when it has a list)."""
        import torch

        # Padded as in training (the labels that collate also builds are not needed).
        batch = collate([(s, [self.vocab.eos]) for s in sources], self.vocab.pad, torch)
        options: dict[str, Any] = {
            "max_new_tokens": settings.max_new_tokens,
            "num_return_sequences": n_return,
            # None (not set for a target: `GenerationSettings.for_target`): allow.
            "no_repeat_ngram_size": settings.no_repeat_ngram_size or 0,
        }
        if settings.sample:
            options |= {"do_sample": True, "temperature": settings.temperature}
            options |= {"top_p": settings.top_p, "num_beams": 1}
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
        else:
            options |= {"do_sample": False, "num_beams": settings.num_beams}
            if settings.num_beams > 1:
                options |= {"length_penalty": settings.length_penalty, "early_stopping": True}
        if words and self.words is not None:
            from transformers import LogitsProcessorList

            if self._constraint is None:
                self._constraint = WordConstraint(self.tokenizer, self.words, self.vocab.eos)
            texts = self.tokenizer.decode_batch(sources, skip_special_tokens=True)
            options["logits_processor"] = LogitsProcessorList([self._constraint.processor(texts)])
        with torch.inference_mode():
            input_ids = batch["input_ids"].to(self.device)
            attention_mask = batch["attention_mask"].to(self.device)
            encoded = self.model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
            self._encoded = {
                tuple(source): state[: len(source)]
                for source, state in zip(sources, encoded.last_hidden_state, strict=True)
            }
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                encoder_outputs=encoded,
                return_dict_in_generate=True,
                output_scores=True,
                **options,
            )
            sequences = out.sequences  # (batch * n_return, 1 + generated)
            if settings.num_beams > 1:
                scores = out.sequences_scores
            else:
                # Mean log-probability of the generated tokens, </s> included, padding not.
                steps = self.model.compute_transition_scores(
                    sequences, out.scores, normalize_logits=True
                )  # (batch * n_return, generated)
                real = sequences[:, 1:] != self.vocab.pad
                # Steps after </s> may score -inf; where() keeps them out of the sum.
                steps = torch.where(real, steps, torch.zeros_like(steps))
                scores = steps.sum(1) / real.sum(1).clamp(min=1)
        # Without the decoder start token; padding only ever follows </s>.
        ids = [_cut_at_eos(row[1:], self.vocab.eos) for row in sequences.tolist()]
        hypotheses = [Hypothesis(i, s) for i, s in zip(ids, scores.float().tolist(), strict=True)]
        return [hypotheses[i : i + n_return] for i in range(0, len(hypotheses), n_return)]

    def score(self, pairs: list[tuple[list[int], list[int]]], batch_size: int = 16) -> list[float]:
        """The mean log-probability per token of each target given its source (targets
        without </s>; it is scored too), as greedy decoding scores what it generates.

        Each distinct source is encoded once, however many targets it has, and not at all
        when the last `generate` call encoded it: scoring a method's candidates costs
        the decoder passes.
        """
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        by_source: dict[tuple[int, ...], list[int]] = {}
        for i, (source, _) in enumerate(pairs):
            by_source.setdefault(tuple(source), []).append(i)
        sources = list(by_source)
        scores = [0.0] * len(pairs)
        for start in range(0, len(sources), batch_size):
            chunk = sources[start : start + batch_size]
            batch = collate([(list(s), [self.vocab.eos]) for s in chunk], self.vocab.pad, torch)
            input_ids = batch["input_ids"].to(self.device)
            mask = batch["attention_mask"].to(self.device)
            rows = [(j, i) for j, source in enumerate(chunk) for i in by_source[source]]
            # Shortest targets first, in parts of about `4 * batch_size` targets of the
            # mean length: a part pads its targets to its longest, and summaries run
            # from a few tokens to a hundred.
            rows.sort(key=lambda row: len(pairs[row[1]][1]))
            with torch.inference_mode():
                encoded = self._encode(chunk, input_ids, mask)
                for part in _parts(rows, lambda row: len(pairs[row[1]][1]) + 1, batch_size):
                    which = torch.tensor([j for j, _ in part], device=self.device)
                    targets = [(pairs[i][0], [*pairs[i][1], self.vocab.eos]) for _, i in part]
                    labels = collate(targets, self.vocab.pad, torch)["labels"].to(self.device)
                    outputs = BaseModelOutput(last_hidden_state=encoded[which])
                    if hasattr(self.model, "label_log_probs"):  # the copy model
                        picked = self.model.label_log_probs(
                            input_ids[which], mask[which], labels, outputs
                        )
                    else:
                        logits = self.model(
                            input_ids=input_ids[which],
                            attention_mask=mask[which],
                            encoder_outputs=outputs,
                            labels=labels,
                        ).logits.float()
                        picked = logits.log_softmax(-1).gather(-1, labels.clamp_min(0)[..., None])
                        picked = picked.squeeze(-1)
                    counted = labels != -100
                    mean = (picked * counted).sum(1) / counted.sum(1).clamp(min=1)
                    for (_, i), value in zip(part, mean.tolist(), strict=True):
                        scores[i] = value
        return scores

    def _encode(
        self, sources: list[tuple[int, ...]], input_ids: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """The encoder's last hidden states of `sources` padded as `input_ids` (the
        padding rows' values are masked out): kept from the last `generate` when it
        encoded them all, else computed."""
        import torch

        if not all(source in self._encoded for source in sources):
            return self.model.get_encoder()(input_ids=input_ids, attention_mask=mask)[0]
        kept = [self._encoded[source] for source in sources]
        return torch.nn.utils.rnn.pad_sequence(kept, batch_first=True)[:, : input_ids.size(1)]


def _parts(rows: list, length, batch_size: int) -> list[list]:
    """`rows`, sorted by `length`, cut into parts of at most `4 * batch_size` rows whose
    padded size (rows times the longest) stays within that many rows of 24 tokens."""
    budget = 4 * batch_size * 24
    parts: list[list] = []
    for row in rows:
        if (
            parts
            and len(parts[-1]) < 4 * batch_size
            and (len(parts[-1]) + 1) * length(row) <= budget
        ):
            parts[-1].append(row)
        else:
            parts.append([row])
    return parts


# The parts of a T5 model whose linear layers the int8 backend quantizes.
_QUANTIZED = frozenset({"encoder", "decoder", "lm_head"})


class TorchInt8Backend(TorchBackend):
    """The PyTorch model with its linear layers quantized to int8 on the fly (PyTorch's
    dynamic quantization: int8 weights, activations quantized per batch), on CPU only; on
    a GPU it is the float model. Runs every model the torch backend runs, copy mechanism
    included, and keeps docstrings in real words; docs/fast-inference.md has
    its speed and quality beside the float32 reference."""

    name = "torch-int8"

    @staticmethod
    def installed() -> bool:
        """Whether torch and transformers can be imported and torch has a quantized engine."""
        if not TorchBackend.installed():
            return False
        import torch

        return any(e != "none" for e in torch.backends.quantized.supported_engines)

    @staticmethod
    def convert(model: T5ForConditionalGeneration) -> T5ForConditionalGeneration:
        """The transformer's linear layers quantized; the copy mechanism's
        (`codemt.pointer`) read their weights directly and stay float."""
        import torch

        layers = {
            name
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name.split(".")[0] in _QUANTIZED
        }
        return torch.ao.quantization.quantize_dynamic(model.float(), layers, dtype=torch.qint8)


class TorchBf16Backend(TorchBackend):
    """The PyTorch model computing in bfloat16, with plain (eager) attention, on a CPU
    with bfloat16 instructions; on a GPU it is the float model.

    Runs every model the torch backend runs, copy mechanism included (its mixture of
    probabilities stays float32), and keeps docstrings in real words. On such a CPU the
    matrix products take half the time of float32's, and eager attention beats torch's
    fused attention kernel for the decoder's one query per step; docs/fast-inference.md
    has the speed and quality beside the float32 reference.
    """

    name = "torch-bf16"

    @staticmethod
    def installed() -> bool:
        """Whether torch and transformers can be imported and the CPU computes in bfloat16."""
        return TorchBackend.installed() and cpu_has_bf16()

    @staticmethod
    def convert(model: T5ForConditionalGeneration) -> T5ForConditionalGeneration:
        """The model in bfloat16 with eager attention."""
        import torch

        model = model.to(torch.bfloat16)
        if hasattr(model, "set_attn_implementation"):  # transformers 4's T5 is eager anyway
            model.set_attn_implementation("eager")
        return model


# ------------------------------------------------------------------ ctranslate2


class CTranslate2Backend:
    """A CTranslate2 export of the checkpoint (float32, int8 or int8_float32 weights)."""

    name = "ctranslate2"

    def __init__(
        self, folder: Path, tokens: list[str], device: str, options: dict[str, Any]
    ) -> None:
        import ctranslate2

        self.folder = folder
        self.device = device
        self.options = options  # ctranslate2.Translator's, to open the model again
        self.model = ctranslate2.Translator(str(folder), **options)
        # CTranslate2 speaks token strings; the export's vocabulary is the tokenizer's.
        self.tokens = tokens
        self.token_ids = {token: i for i, token in enumerate(tokens)}

    @staticmethod
    def installed() -> bool:
        """Whether the ctranslate2 package can be imported."""
        return importlib.util.find_spec("ctranslate2") is not None

    @staticmethod
    def find(path: Path) -> Path | None:
        """The export `path` names: itself, or the `ctranslate2/` subfolder of its checkpoint."""
        if is_ctranslate2_export(path):
            return Path(path)
        export = resolve_checkpoint(path) / CTRANSLATE2_SUBFOLDER
        return export if is_ctranslate2_export(export) else None

    @classmethod
    def open(
        cls,
        folder: Path,
        tokenizer: Tokenizer,
        vocab: Vocabulary,
        *,
        device: str | torch.device | None = None,
        threads: int | None = None,
    ) -> CTranslate2Backend:
        """Open the export in `folder` with the compute type it was quantized to.

        On the GPU when CTranslate2 sees one, unless `device` says otherwise; `threads` is
        CTranslate2's `intra_threads` (None: its default).
        """
        import ctranslate2

        if device is None:
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        kind, _, index = str(device).partition(":")
        options = {
            "device": kind,
            "device_index": int(index or 0),
            "compute_type": "default",  # the type the weights were saved in
            "intra_threads": threads or 0,
        }
        tokens = [tokenizer.id_to_token(i) for i in range(tokenizer.get_vocab_size())]
        return cls(Path(folder), tokens, str(device), options)

    @property
    def parameters(self) -> int:
        """Number of model parameters, as the export recorded them."""
        return int(read_meta(self.folder)["export"]["parameters"])

    def generate(
        self,
        sources: list[list[int]],
        n_return: int,
        settings: GenerationSettings,
        *,
        words: bool = False,
    ) -> list[list[Hypothesis]]:
        """`n_return` hypotheses per source with CTranslate2's `translate_batch` (`words` is
        not applied: its Python API has no per-step hook)."""
        import ctranslate2

        options: dict[str, Any] = {
            "num_hypotheses": n_return,
            "max_decoding_length": settings.max_new_tokens,
            "min_decoding_length": 0,  # as transformers: </s> may come first
            "max_input_length": 0,  # inputs are built to the model's length already
            # None (not set for a target: `GenerationSettings.for_target`): allow.
            "no_repeat_ngram_size": settings.no_repeat_ngram_size or 0,
            "return_scores": True,
        }
        model = self.model
        if settings.sample:
            # sampling_topk=0: the whole vocabulary, as transformers samples (top-p aside).
            options |= {"beam_size": 1, "sampling_topk": 0, "sampling_topp": settings.top_p}
            options |= {"sampling_temperature": settings.temperature, "length_penalty": 1.0}
            if settings.seed is not None:
                # CTranslate2 seeds a worker thread's generator once, when the thread first
                # samples (its issue #1757): only a model opened after the seed is set
                # draws the seeded stream, so a seeded batch gets a model of its own.
                ctranslate2.set_random_seed(settings.seed)
                model = ctranslate2.Translator(str(self.folder), **self.options)
        elif settings.num_beams > 1:
            options |= {"beam_size": settings.num_beams, "length_penalty": settings.length_penalty}
        else:
            # A length penalty of 1 makes the greedy score the mean token log-probability.
            options |= {"beam_size": 1, "length_penalty": 1.0}
        results = model.translate_batch(
            [[self.tokens[i] for i in source] for source in sources], **options
        )
        return [
            [
                Hypothesis([self.token_ids[t] for t in tokens], score)
                for tokens, score in zip(result.hypotheses, result.scores, strict=True)
            ]
            for result in results
        ]


# ------------------------------------------------------------------ choosing one

BACKENDS: dict[str, type[TorchBackend] | type[CTranslate2Backend]] = {
    "torch": TorchBackend,
    "torch-bf16": TorchBf16Backend,
    "torch-int8": TorchInt8Backend,
    "ctranslate2": CTranslate2Backend,
}
# What `auto` tries, in order: the first installed backend that finds its form of the model.
AUTO_ORDER = ("ctranslate2", "torch-bf16", "torch")
BACKEND_CHOICES = ("auto", *BACKENDS)


def select_backend(path: Path | str, name: str = "auto") -> tuple[str, Path]:
    """The backend to load the model at `path` with, and the folder it loads.

    Raises BackendUnavailable when the backend named is not installed or the model has
    no form it loads, FileNotFoundError when `path` is no model at all.
    """
    path = Path(path)
    if name not in BACKEND_CHOICES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_CHOICES)}")
    for candidate in AUTO_ORDER if name == "auto" else (name,):
        backend = BACKENDS[candidate]
        if not backend.installed():
            if name == "auto":
                continue
            raise BackendUnavailable(_missing_library(candidate))
        folder = backend.find(path)
        if folder is not None:
            return candidate, folder
        if name != "auto":
            raise BackendUnavailable(_missing_form(candidate, path))
    # auto found nothing: an export that ctranslate2 is not installed to run, or no torch.
    if is_ctranslate2_export(path):
        raise BackendUnavailable(f"{path}: a CTranslate2 export; {_missing_library('ctranslate2')}")
    raise BackendUnavailable(_missing_library("torch"))


def _missing_library(name: str) -> str:
    if name == "torch-bf16" and TorchBackend.installed():
        return (
            "the torch-bf16 backend needs a CPU with bfloat16 instructions (AVX-512 BF16 or "
            "AMX), which this one lacks; use --backend torch"
        )
    hints = {
        "ctranslate2": f"the ctranslate2 backend needs the ctranslate2 package: {INSTALL_HINT}",
        "torch": "the torch backend needs torch and transformers: pip install 'codemt[model]'",
        "torch-int8": "the torch-int8 backend needs torch (with a quantized engine) and "
        "transformers: pip install 'codemt[model]'",
        "torch-bf16": "the torch-bf16 backend needs torch and transformers: pip install "
        "'codemt[model]'",
    }
    return hints[name]


def _missing_form(name: str, path: Path) -> str:
    if name.startswith("torch"):
        source = read_meta(path).get("export", {}).get("source", "the checkpoint")
        return (
            f"{path}: a CTranslate2 export holds no PyTorch weights; use the ctranslate2 "
            f"backend, or load the checkpoint it was exported from ({source})"
        )
    checkpoint = resolve_checkpoint(path)
    export = checkpoint / CTRANSLATE2_SUBFOLDER
    return (
        f"{path}: no CTranslate2 export here or in {export}; make one with "
        f"`codemt export {path} --format ctranslate2 --out {export}`"
    )
