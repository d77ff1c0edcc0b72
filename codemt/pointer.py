"""T5 with a copy mechanism: each output token is generated or copied from the source.

A summary of `def get_dict(self, key)` says "dict" and "key": words the source holds, but
as pieces of identifiers that a small model must learn to respell. A pointer-generator
(See et al., 2017) gives the decoder a second way to emit a token: point at a source
position and copy its token. At each step

    p(w) = g * p_vocab(w) + (1 - g) * sum of a(j) over the source positions j holding w

where `a` is a single-head attention of the decoder state over the encoder's outputs (its
own, not one of the transformer's heads, so that it can learn to point without disturbing
them) and `g` a gate computed from the decoder state and what `a` reads. Special tokens
(padding, </s>, control codes) are never copied.

`logits` are the logarithms of p: every consumer of logits (cross-entropy, softmax,
beam search) computes exactly as with a plain model. Generation needs the source ids at
every step; `generate(input_ids=..., source_ids=input_ids)` keeps them with the encoder's
outputs (beam search repeats them per beam as it does the attention mask).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import T5Config, T5ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput

# The gate starts at sigmoid(3) = 0.95 to generate, so a plain model extended with a copy
# head starts about where it was (its loss rises by at most -ln 0.95 = 0.05).
_INITIAL_GATE_BIAS = 3.0
_POINTER_DIM = 64


class PointerT5(T5ForConditionalGeneration):
    """`T5ForConditionalGeneration` whose config has `copy_excluded_ids` (the special tokens'
    ids, never copied), with a pointer and a gate on top (see the module's docstring)."""

    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        d = config.d_model
        self.pointer_query = nn.Linear(d, _POINTER_DIM, bias=False)
        self.pointer_key = nn.Linear(d, _POINTER_DIM, bias=False)
        self.copy_gate = nn.Linear(2 * d, 1)
        # Not a buffer: from_pretrained builds models on the meta device and would leave a
        # non-persistent buffer uninitialised. Made on first use, per device.
        self._excluded: dict[torch.device, torch.Tensor] = {}
        self.reset_pointer()

    def copy_excluded(self, device: torch.device) -> torch.Tensor:
        """(vocab,) bool: True for the tokens never copied."""
        if device not in self._excluded:
            mask = torch.zeros(self.config.vocab_size, dtype=torch.bool, device=device)
            mask[list(self.config.copy_excluded_ids)] = True
            self._excluded[device] = mask
        return self._excluded[device]

    def reset_pointer(self) -> None:
        """Initialise the pointer and gate (a plain checkpoint loaded into this class has none)."""
        if self.copy_gate.weight.device.type == "meta":
            return
        std = self.config.d_model**-0.5
        for layer in (self.pointer_query, self.pointer_key, self.copy_gate):
            nn.init.normal_(layer.weight, std=std)
        nn.init.constant_(self.copy_gate.bias, _INITIAL_GATE_BIAS)
        self.copy_gate.weight.data.mul_(0.1)

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
        if source_ids is None:
            source_ids = input_ids
        if source_ids is None:
            raise ValueError("PointerT5 needs the source ids: pass input_ids or source_ids")
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(last_hidden_state=encoder_outputs[0])
        encoded = encoder_outputs.last_hidden_state
        if labels is not None and decoder_input_ids is None:
            decoder_input_ids = self._shift_right(labels)
        decoded = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoded,
            encoder_attention_mask=attention_mask,
            use_cache=use_cache,
            **kwargs,
        )
        state = decoded[0]
        if getattr(self.config, "scale_decoder_outputs", False):
            state = state * (self.model_dim**-0.5)
        logits = self.lm_head(state)
        with torch.autocast(logits.device.type, enabled=False):
            log_probs = self._mix(
                logits.float(), state.float(), encoded.float(), source_ids, attention_mask
            )
        loss = None
        if labels is not None:
            loss = nn.functional.nll_loss(
                log_probs.flatten(0, 1), labels.to(log_probs.device).flatten(), ignore_index=-100
            )
        # The decoder's cache is `cache` in transformers 5, `past_key_values` in 4.
        key = "cache" if hasattr(decoded, "cache") else "past_key_values"
        cache = {key: getattr(decoded, key)}
        return Seq2SeqLMOutput(
            loss=loss, logits=log_probs, encoder_last_hidden_state=encoded, **cache
        )

    def _mix(
        self,
        logits: torch.Tensor,
        state: torch.Tensor,
        encoded: torch.Tensor,
        source_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """log p of the module's docstring, (batch, steps, vocab), in float32 (also under
        mixed precision: scatter_add_ needs one dtype, small probabilities the range)."""
        copyable = ~self.copy_excluded(source_ids.device)[source_ids]  # (batch, source)
        if attention_mask is not None:
            copyable &= attention_mask.bool()
        scores = self.pointer_query(state) @ self.pointer_key(encoded).transpose(1, 2)
        scores = scores * _POINTER_DIM**-0.5
        scores = scores.masked_fill(~copyable[:, None, :], torch.finfo(scores.dtype).min)
        # A source with nothing copyable gets a uniform pointer that the mask zeroes below.
        pointer = scores.softmax(-1) * copyable[:, None, :]  # (batch, steps, source)
        read = pointer @ encoded
        gate = self.copy_gate(torch.cat([state, read], -1))
        copy = torch.zeros_like(logits).scatter_add_(
            2, source_ids[:, None, :].expand(-1, pointer.size(1), -1), pointer
        )
        # clamp: log 0 would give -inf and, through logaddexp, a NaN gradient.
        copied = nn.functional.logsigmoid(-gate) + copy.clamp_min(1e-30).log()
        generated = nn.functional.logsigmoid(gate) + logits.log_softmax(-1)
        return torch.logaddexp(generated, copied)
