"""Writing generated text into users' files, and keeping their docstrings true.

templates (a docstring in a style, built from the code's facts) and apply (libcst edits,
verified, then replaced atomically by `atomic`) do the work; docstring (`codemt docstring`:
a project's missing docstrings), complete (`codemt complete`: bodies), classes (class
docstrings), upkeep (lint and update of what a docstring says against its code) and convert
(one docstring style to another) are the jobs; edits gives editors the same text as the
smallest text edit (the language server, the HTTP API).
"""
