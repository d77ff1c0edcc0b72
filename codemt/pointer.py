"""T5 with a copy mechanism: each output token is generated or copied from the source.

A summary of `def get_dict(self, key)` says "dict" and "key", words its source holds:
with `name_words` (see `codemt.examples`) as the very tokens that prose spells them with.
A plain model must still learn to reproduce each of them through its vocabulary; a
pointer-generator (See et al., 2017) gives the decoder a second way to emit a token: point
at a source position and copy its token. At each step

    p(w) = g * p_vocab(w) + (1 - g) * sum of a(j) over the source positions j holding w

where `a` is a single-head attention of the decoder state over the encoder's outputs (its
own, not one of the transformer's heads, so that it can learn to point without disturbing
them) and `g` a gate computed from the decoder state and what `a` reads. Special tokens
(padding, </s>, control codes) are never copied.

`logits` are the logarithms of p: every consumer of logits (cross-entropy, softmax,
beam search) computes exactly as with a plain model. In training mode with labels, the
loss is computed from p at the labels alone and `logits` is None: with the mixture over
the whole vocabulary a training step of `small` took 11-30% longer than a plain model's on
a CPU, with p at the labels 3-6% (`benchmarks/pointer_cost.py`). Generation needs the
source ids at every step: `generate` keeps `input_ids` as `source_ids` beside the
encoder's outputs (beam search repeats them per beam as it does the attention mask).
Needs transformers 5.
"""

from __future__ import annotations

from typing import Any

import torch
import transformers
from torch import nn
from transformers import T5Config, T5ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput

# The gate starts at about sigmoid(3) = 0.95 to generate, so a plain model extended with a
# copy head starts about where it was (its loss rises by about -ln 0.95 = 0.05).
_INITIAL_GATE_BIAS = 3.0
_POINTER_DIM = 64
_ALWAYS = 1e4  # a gate logit that generates: log sigmoid(-1e4) = -1e4


class PointerT5(T5ForConditionalGeneration):
    """`T5ForConditionalGeneration` whose config has `copy_excluded_ids` (the special tokens'
    ids, never copied), with a pointer and a gate on top (see the module's docstring)."""

    def __init__(self, config: T5Config) -> None:
        if int(transformers.__version__.split(".")[0]) < 5:
            # transformers 4's T5 builds its own generation inputs, without source_ids.
            raise ValueError(
                f"the copy mechanism needs transformers 5 or newer, not "
                f"{transformers.__version__}: pip install 'transformers>=5'"
            )
        super().__init__(config)
        d = config.d_model
        self.pointer_query = nn.Linear(d, _POINTER_DIM, bias=False)
        self.pointer_key = nn.Linear(d, _POINTER_DIM, bias=False)
        self.copy_gate = nn.Linear(2 * d, 1)
        # Not a buffer: from_pretrained builds models on the meta device and would leave a
        # non-persistent buffer uninitialised. Made on first use, per device.
        self._excluded: dict[torch.device, torch.Tensor] = {}
        # While generating: the last encoder outputs and their pointer keys (`_source_keys`),
        # and the last half-precision outputs and their float32 copy (`_float_outputs`),
        # each one tuple, replaced whole: a thread reading it never sees half of another's.
        self._keep_keys = False
        self._keys: tuple[torch.Tensor, torch.Tensor] | None = None
        self._floats: tuple[torch.Tensor, torch.Tensor] | None = None
        self.reset_pointer()

    def copy_excluded(self, device: torch.device) -> torch.Tensor:
        """(vocab,) bool: True for the tokens never copied."""
        if device not in self._excluded:
            mask = torch.zeros(self.config.vocab_size, dtype=torch.bool, device=device)
            mask[list(self.config.copy_excluded_ids)] = True
            self._excluded[device] = mask
        return self._excluded[device]

    def reset_pointer(self) -> None:
        """Initialise the pointer and the gate."""
        for layer in (self.pointer_query, self.pointer_key, self.copy_gate):
            self._init_weights(layer)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Also what from_pretrained calls for the parts a plain T5 checkpoint lacks.
        gate = module is getattr(self, "copy_gate", None)
        pointer = any(module is getattr(self, n, None) for n in ("pointer_query", "pointer_key"))
        if not (gate or pointer):
            super()._init_weights(module)
        elif module.weight.device.type != "meta":
            # The gate's weights small: it starts near its bias, whatever the state.
            std = self.config.d_model**-0.5 * (0.1 if gate else 1.0)
            nn.init.normal_(module.weight, std=std)
            if gate:
                nn.init.constant_(module.bias, _INITIAL_GATE_BIAS)

    def generate(self, *args, **kwargs):
        """transformers' `generate`, with `source_ids` defaulting to `input_ids`."""
        if kwargs.get("source_ids") is None:
            source = kwargs.get("input_ids", args[0] if args else None)
            if source is None:
                raise ValueError("PointerT5.generate needs input_ids (the source ids)")
            kwargs["source_ids"] = source
        self._keep_keys = True
        try:
            return super().generate(*args, **kwargs)
        finally:
            # No encoder outputs kept after.
            self._keep_keys, self._keys, self._floats = False, None, None

    def _reorder_cache(self, cache: Any, beam_idx: torch.LongTensor) -> Any:
        """Beam search's hook to follow the beams it keeps, for the decoder's own keys and
        values only.

        A beam only ever continues a beam of the same source, and every beam of a source
        holds the same cross-attention keys and values (the encoder's outputs repeated per
        beam): reordering them would copy the whole source's keys and values of every layer
        at every step for nothing, and with project memory the sources are long.
        """
        getattr(cache, "self_attention_cache", cache).reorder_cache(beam_idx)
        return cache

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        source_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        if (
            kwargs.get("inputs_embeds") is not None
            or kwargs.get("decoder_inputs_embeds") is not None
        ):
            raise ValueError("PointerT5 copies source tokens: pass ids, not embeddings")
        kwargs.pop("inputs_embeds", None)
        kwargs.pop("decoder_inputs_embeds", None)
        if labels is not None and decoder_input_ids is None:
            decoder_input_ids = self._shift_right(labels)
        decoded, mixed = self._decode(
            input_ids,
            attention_mask,
            decoder_input_ids,
            decoder_attention_mask,
            encoder_outputs,
            source_ids,
            use_cache=use_cache,
            **kwargs,
        )
        logits, _, encoded = mixed[:3]
        log_probs = loss = None
        if labels is not None:
            labels = labels.to(logits.device)
        with torch.autocast(logits.device.type, enabled=False):
            if labels is not None and self.training:
                # Training needs p at the labels alone: no (batch, steps, vocab) mixture.
                # A masked mean, not indexing by the mask: no wait for the device.
                counted = labels != -100
                log_p = self._log_p(*mixed, labels).squeeze(-1)
                loss = -log_p.masked_fill(~counted, 0).sum() / counted.sum()
            else:
                log_probs = self._log_p(*mixed)
                if labels is not None:
                    loss = nn.functional.nll_loss(
                        log_probs.flatten(0, 1), labels.flatten(), ignore_index=-100
                    )
        # The decoder's cache is `cache` in transformers 5, `past_key_values` in 4.
        key = "cache" if hasattr(decoded, "cache") else "past_key_values"
        cache = {key: getattr(decoded, key)}
        return Seq2SeqLMOutput(
            loss=loss, logits=log_probs, encoder_last_hidden_state=encoded, **cache
        )

    def label_log_probs(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        labels: torch.LongTensor,
        encoder_outputs: BaseModelOutput | None = None,
    ) -> torch.Tensor:
        """log p of each label, (batch, steps), in float32 (-100 labels: any value): what
        scoring texts needs, without the (batch, steps, vocabulary) mixture."""
        _, mixed = self._decode(
            input_ids,
            attention_mask,
            self._shift_right(labels),
            None,
            encoder_outputs,
            None,
            use_cache=False,  # one pass over the whole labels: no keys and values to keep
        )
        with torch.autocast(mixed[0].device.type, enabled=False):
            return self._log_p(*mixed, labels.to(mixed[0].device)).squeeze(-1)

    def _decode(
        self,
        input_ids: torch.LongTensor | None,
        attention_mask: torch.Tensor | None,
        decoder_input_ids: torch.LongTensor | None,
        decoder_attention_mask: torch.Tensor | None,
        encoder_outputs: BaseModelOutput | tuple | None,
        source_ids: torch.LongTensor | None,
        **kwargs,
    ) -> tuple[Any, tuple]:
        """The decoder's output and the float32 inputs of `_log_p` (logits, state, encoder
        outputs, source ids, attention mask); the encoder runs unless its outputs are given."""
        if source_ids is None:
            source_ids = input_ids
        if source_ids is None:
            raise ValueError("PointerT5 needs the source ids: pass input_ids or source_ids")
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(last_hidden_state=encoder_outputs[0])
        encoded = encoder_outputs.last_hidden_state
        decoded = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoded,
            encoder_attention_mask=attention_mask,
            **kwargs,
        )
        state = decoded[0]
        if getattr(self.config, "scale_decoder_outputs", False):
            state = state * (self.model_dim**-0.5)
        logits = self.lm_head(state)
        with torch.autocast(logits.device.type, enabled=False):
            encoded = self._float_outputs(encoded)
            mixed = (logits.float(), state.float(), encoded, source_ids, attention_mask)
        return decoded, mixed

    def _float_outputs(self, encoded: torch.Tensor) -> torch.Tensor:
        """The encoder outputs in float32. Outputs in half precision come again at every
        step of a generation: their copy is kept while it runs, so that each step neither
        copies them again nor makes their pointer keys again."""
        if encoded.dtype == torch.float32:
            return encoded
        kept = self._floats
        if kept is not None and kept[0] is encoded:
            return kept[1]
        copy = encoded.float()
        if self._keep_keys:
            self._floats = (encoded, copy)
        return copy

    def point(
        self,
        state: torch.Tensor,
        encoded: torch.Tensor,
        source_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The pointer, (batch, steps, source) weights on the copyable source positions, and
        the gate's logit, (batch, steps, 1), from float32 decoder states and encoder outputs.
        sigmoid(gate) is the share that generates."""
        copyable = ~self.copy_excluded(source_ids.device)[source_ids]  # (batch, source)
        if attention_mask is not None:
            copyable &= attention_mask.bool()
        # The layers' own weights in float32 too (a model may be stored in half precision).
        query = nn.functional.linear(state, self.pointer_query.weight.float())
        scores = query @ self._source_keys(encoded).transpose(1, 2)
        scores = scores * _POINTER_DIM**-0.5
        scores = scores.masked_fill(~copyable[:, None, :], torch.finfo(scores.dtype).min)
        # A source with nothing copyable gets a uniform pointer that the mask zeroes, and a
        # gate that only generates.
        pointer = scores.softmax(-1) * copyable[:, None, :]
        read = pointer @ encoded
        gate = nn.functional.linear(
            torch.cat([state, read], -1), self.copy_gate.weight.float(), self.copy_gate.bias.float()
        )
        return pointer, gate.masked_fill(~copyable.any(-1)[:, None, None], _ALWAYS)

    def _source_keys(self, encoded: torch.Tensor) -> torch.Tensor:
        """The pointer's keys of the encoder outputs, (batch, source, pointer dim).

        Generation passes the same encoder outputs at every step: while it runs, the keys of
        the last outputs are kept and reused as long as those outputs come again (from
        outputs in half precision, their float32 copy, kept too: `_float_outputs`).
        """
        kept = self._keys
        if kept is not None and kept[0] is encoded:
            return kept[1]
        keys = nn.functional.linear(encoded, self.pointer_key.weight.float())
        if self._keep_keys:
            self._keys = (encoded, keys)
        return keys

    def _log_p(
        self,
        logits: torch.Tensor,
        state: torch.Tensor,
        encoded: torch.Tensor,
        source_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None,
        labels: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """log p of the module's docstring in float32 (also under mixed precision:
        scatter_add_ needs one dtype, small probabilities the range): over the vocabulary,
        (batch, steps, vocab), or with `labels` at each label alone, (batch, steps, 1)."""
        pointer, gate = self.point(state, encoded, source_ids, attention_mask)
        if labels is None:
            generated = logits.log_softmax(-1)
            copy = torch.zeros_like(logits).scatter_add_(
                2, source_ids[:, None, :].expand(-1, pointer.size(1), -1), pointer
            )
        else:
            label = labels.clamp_min(0)[..., None]  # -100 (not counted) as any token
            generated = logits.gather(-1, label) - logits.logsumexp(-1, keepdim=True)
            # The pointer's weight on the source positions that hold the label.
            copy = (pointer * (source_ids[:, None, :] == label)).sum(-1, keepdim=True)
        # clamp: log 0 would give -inf and, through logaddexp, a NaN gradient.
        return torch.logaddexp(
            nn.functional.logsigmoid(gate) + generated,
            nn.functional.logsigmoid(-gate) + copy.clamp_min(1e-30).log(),
        )
