"""The corpus miner, stage one of codemt: Python sources in, method records out.

sources (where files come from) -> reading (decode, repair, parse) -> extract (methods
and their features) -> docstrings (cleaning, style) -> dedup (exact and MinHash LSH)
-> pipeline (parallel staging, global dedup, split, Parquet shards and manifest).
"""
