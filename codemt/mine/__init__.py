"""The corpus miner, stage one of codemt: Python sources in, method records out.

sources (where files come from) -> `codemt.source` (decode, repair, parse; methods and their
features; docstring cleaning and style) -> dedup (exact and MinHash LSH) -> pipeline
(parallel staging, global dedup, split, Parquet shards and manifest).
"""
