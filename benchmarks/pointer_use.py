"""Does a model with a copy mechanism (`codemt.pointer`) point at what it should copy?

On validation methods' docstrings (the reference summaries, teacher-forced), for the target
tokens that the source holds: how often the pointer's largest weight is on a source position
holding that very token, and the share of probability the gate gives to copying there and
elsewhere. A pointer that has learned its job hits most such tokens, and its gate copies
more where copying can help.

    python benchmarks/pointer_use.py CHECKPOINT... --corpus RUN/corpus [--methods 60]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from codemt.evaluate import load_data, parse_mode
from codemt.pointer import PointerT5
from codemt.translate import Translator

MODE = "signature+body->docstring"


def pointer_use(checkpoint: Path, corpus: Path, methods: int) -> dict[str, float]:
    """Hit rate of the pointer and mean copy share on copyable and other target tokens."""
    translator = Translator.load(checkpoint, backend="torch", device="cpu")
    model = translator.model
    if not isinstance(model, PointerT5):
        raise SystemExit(f"{checkpoint}: no copy mechanism (trained without copy: true)")
    data = load_data(corpus, "valid")
    mode = parse_mode(MODE)
    chosen = data.examples(mode, methods)
    sources = translator.encode(
        [data.records[i] for i in chosen], "docstring", sources=mode.sources
    )
    hits, copyable_shares, other_shares = 0, [], []
    for i, source in zip(chosen, sources, strict=True):
        reference = data.references[i]["docstring"]
        target = translator.tokenizer.encode(reference).ids[: translator.examples.max_target_tokens]
        x = torch.tensor([source])
        y = torch.tensor([target + [translator.vocab.eos]])
        with torch.no_grad():
            encoded = model.encoder(input_ids=x).last_hidden_state
            state = model.decoder(
                input_ids=model._shift_right(y), encoder_hidden_states=encoded
            ).last_hidden_state
            pointer, gate = model.point(state.float(), encoded.float(), x, None)
        copy_share = torch.sigmoid(-gate)[0, :, 0].tolist()
        pointed = x[0][pointer[0].argmax(-1)].tolist()
        in_source = set(source) - set(model.config.copy_excluded_ids)
        for position, token in enumerate(y[0].tolist()):
            if token in in_source:
                hits += pointed[position] == token
                copyable_shares.append(copy_share[position])
            else:
                other_shares.append(copy_share[position])
    n = len(copyable_shares)
    return {
        "copyable": n,
        "hit_rate": hits / max(n, 1),
        "copy_share_copyable": sum(copyable_shares) / max(n, 1),
        "copy_share_other": sum(other_shares) / max(len(other_shares), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--corpus", type=Path, required=True, help="the corpus (valid split)")
    parser.add_argument("--methods", type=int, default=60, help="documented methods to read")
    args = parser.parse_args()
    print(
        f"{'checkpoint':<40} {'copyable':>8} {'hits':>6} {'copy share there':>16} {'elsewhere':>9}"
    )
    for checkpoint in args.checkpoints:
        r = pointer_use(checkpoint, args.corpus, args.methods)
        print(
            f"{str(checkpoint):<40} {r['copyable']:>8} {r['hit_rate']:>6.1%} "
            f"{r['copy_share_copyable']:>16.1%} {r['copy_share_other']:>9.1%}"
        )


if __name__ == "__main__":
    main()
