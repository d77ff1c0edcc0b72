"""The corpus miner, stage one of codemt: Python sources in, method records out.

The modules, in the order data flows through them:

    settings     MineSettings, FilterSettings: what decides the corpus
    sources      source specs and list files -> the reader for each kind of source:
      folders      local folders and .py files (walked by `codemt.source.files`)
      git          git URLs and bare repositories, cloned into the cache
      archives     sdists, wheels, tarballs and zips, extracted into the cache
      interpreter  python:stdlib and python:site-packages
    resolved     what the readers give: Repository, JsonlSource, SourceFailure, Skip
    jsonl        CodeSearchNet jsonl files: their lines and each row's code
    records      one file or row -> method records (`codemt.source` parses) with the keys
                 of dedup (exact and MinHash LSH)
    staging      phase one: every source's records staged in parallel, resumable
    selection    phase two: global de-duplication and the split of each repository
    shards       the surviving records written as Parquet shards
    pipeline     `mine` runs both phases and writes the manifest; `format_report`
    csn          the corpus written back as CodeSearchNet jsonl (`--jsonl`)
"""
