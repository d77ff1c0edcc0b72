"""Reading Python source: what mining, writing and serving all start from.

files (a project's Python files: one walk, one skip rule, .gitignore honoured) -> reading
(decode any encoding, repair Python 2, parse with limits) -> extract (functions and their
features: signature, docstring, body, class and imports) -> docstrings (cleaning a
docstring, its summary, its style) and sections (a docstring's sections read line for
line, so that an edit keeps every byte it does not change).
"""
