"""Export: a checkpoint in a form that runs faster, for inference only.

The one format is CTranslate2 (`pip install 'codemt[fast]'`), with weights in float32 or
quantized to int8::

    codemt export runs/multimode --format ctranslate2 --quantization int8
    # -> runs/multimode/step-.../ctranslate2/, which Translator.load(runs/multimode) then uses

An export folder holds CTranslate2's `model.bin`, `config.json` and vocabulary, the
checkpoint's tokenizer files and its `codemt.json` with an `export` entry (format,
quantization, source checkpoint, parameter count), so `Translator.load(folder)` opens it
and picks the ctranslate2 backend by itself.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codemt.backends import (
    CTRANSLATE2_FORMAT,
    INSTALL_HINT,
    BackendUnavailable,
    is_ctranslate2_export,
    read_meta,
)
from codemt.model import (
    CODEMT_FILE,
    count_parameters,
    has_pointer,
    load_checkpoint,
    resolve_checkpoint,
)
from codemt.tokenizer import TOKENIZER_FILES, load_tokenizer

# CTranslate2's weight types: int8 everywhere it can (on GPU it computes in float16 where
# the card supports it), int8 weights with float32 for the rest, or unquantized.
QUANTIZATIONS = ("int8", "int8_float32", "float32")


def _converter(checkpoint: Path) -> Any:
    """A CTranslate2 converter that reads our checkpoint the way `load_checkpoint` does."""
    from ctranslate2.converters import TransformersConverter

    class CheckpointConverter(TransformersConverter):
        parameters = 0

        def load_model(self, model_class: Any, model_name_or_path: str, **kwargs: Any) -> Any:

            # Our loader: float32 (shipped weights may be float16), the untied lm_head
            # checked, transformers' tie warnings silenced.
            model = load_checkpoint(model_name_or_path).model
            # CTranslate2's T5 loader reads `tie_word_embeddings` as "scale decoder outputs
            # by d_model ** -0.5", transformers 4's meaning. transformers 5 moved that to
            # `scale_decoder_outputs` and always reports tie_word_embeddings=True, so the
            # export would scale outputs that our v1.1 model does not: greedy argmax stays
            # the same, but every score, beam and sample changes.
            config = model.config
            config.tie_word_embeddings = getattr(
                config, "scale_decoder_outputs", config.tie_word_embeddings
            )
            self.parameters = count_parameters(model)
            return model

    return CheckpointConverter(str(checkpoint))


def export_ctranslate2(checkpoint: Path | str, out: Path | str, quantization: str = "int8") -> Path:
    """Convert a checkpoint (or the one a run folder stands for) into a CTranslate2 export at
    `out`.

    `out` is replaced if it holds an export already; any other existing folder is refused.
    The export is written beside `out` and renamed into place, so a failed export leaves
    no half-written folder. Returns `out`.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"unknown quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}"
        )
    checkpoint = resolve_checkpoint(checkpoint)
    if is_ctranslate2_export(checkpoint):
        raise ValueError(f"{checkpoint}: already a CTranslate2 export; export its checkpoint")
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    if has_pointer(config):
        raise ValueError(
            f"{checkpoint}: the model has a copy mechanism (trained with `copy`), which "
            f"CTranslate2 cannot run; use it as it is (the torch backend)"
        )
    try:
        import ctranslate2
    except ImportError:
        raise BackendUnavailable(
            f"exporting to CTranslate2 needs ctranslate2: {INSTALL_HINT}"
        ) from None
    out = Path(out)
    if out.exists() and not is_ctranslate2_export(out):
        raise FileExistsError(
            f"{out}: exists and is not a CTranslate2 export; choose another --out"
        )
    meta = read_meta(checkpoint)
    vocab_size = config["vocab_size"]
    # The converter pads a short vocabulary with <extra_id_N> names that ours already uses.
    if load_tokenizer(checkpoint).get_vocab_size() != vocab_size:
        raise ValueError(
            f"{checkpoint}: the model's vocabulary ({vocab_size}) is not the tokenizer's; "
            f"the checkpoint's tokenizer files do not belong to it"
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as tmp:
        staging = Path(tmp) / "export"
        converter = _converter(checkpoint)
        converter.convert(str(staging), quantization=quantization)
        for name in TOKENIZER_FILES:
            if (checkpoint / name).is_file():
                shutil.copy2(checkpoint / name, staging / name)
        meta["export"] = {
            "format": CTRANSLATE2_FORMAT,
            "quantization": quantization,
            "source": str(checkpoint),
            "parameters": converter.parameters,
            "ctranslate2_version": ctranslate2.__version__,
        }
        (staging / CODEMT_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    return out


FORMATS: dict[str, Callable[[Path | str, Path | str, str], Path]] = {
    CTRANSLATE2_FORMAT: export_ctranslate2,
}
