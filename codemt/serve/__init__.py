"""Serving the model to editors and programs.

app (`codemt serve`: the HTTP API, the playground page in static/) with batcher (requests
that arrive together generated together) and api (the request and response models);
lsp (`codemt lsp`: the language server). Both write into files through `codemt.write`.
"""
