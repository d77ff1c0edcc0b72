"""`codemt complete FILE:FUNCTION`: draft the body of a stub from its signature and docstring.

    codemt complete shapes.py:Circle.area             # a diff of the drafted body
    codemt complete shapes.py:Circle.area --write     # written in place, safely

A stub is a function with a docstring whose only statement is `...`, `pass` or
`raise NotImplementedError`. The model translates signature and docstring into a body;
of its candidates (beams, or `--samples N` sampled ones) the best-scored one that makes
the file parse replaces the stub's statement. The file is verified and written as
`codemt docstring` writes: everything outside that function's body stays as it was.
"""

from __future__ import annotations

from collections.abc import Sequence

from codemt.generation import GenerationSettings
from codemt.write.apply import (
    Change,
    Function,
    SourceError,
    body_edit,
    edit_functions,
    encode,
    parse_cst,
    read_source,
    verify_edit,
)
from codemt.write.docstring import Generator
from codemt.write.templates import is_stub


class CompleteError(Exception):
    """Why a function cannot be completed, in one line for the user.

    `exit_code` is 2 for the user's input (no such function, not a stub) and 1 when the
    model wrote no body that parses.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def find_stub(functions: Sequence[Function], path: str, name: str) -> Function:
    """The function named `name` (qualified: `Class.method`), checked to be a stub."""
    chosen = [f for f in functions if f.name == name]
    if not chosen:
        names = ", ".join(f.name for f in functions) or "none"
        raise CompleteError(f"{path}: no function {name!r}; the functions in it are: {names}")
    function = chosen[0]
    where = f"{path}:{function.line}: {name}"
    if not function.docstring:
        raise CompleteError(f"{where} has no docstring to draft from: write one first")
    if not is_stub(function.node):
        raise CompleteError(
            f"{where} has a body already (only `...`, `pass` or `raise NotImplementedError` "
            f"is replaced)"
        )
    return function


def complete(
    path: str, name: str, generator: Generator, settings: GenerationSettings
) -> tuple[Change, str]:
    """Draft the body of stub `name` in file `path`: the verified change and the body.

    Raises CompleteError when the function is no stub or no candidate body parses, and
    SourceError when the file cannot be read or edited.
    """
    from pathlib import Path

    source = read_source(Path(path))
    function = find_stub(source.functions, path, name)
    record = {**function.record, "body": ""}
    result = generator.translate_batch(
        [record], "body", sources=("signature", "docstring"), settings=settings
    )[0]
    module = parse_cst(source)
    # Parsing candidates first, then by score: the Translator's own order of preference.
    candidates = sorted(result.candidates, key=lambda c: (c.parsed is True, c.score), reverse=True)
    for candidate in candidates:
        if not candidate.text.strip():
            continue
        try:
            edited = edit_functions(module, {function.index: body_edit(candidate.text)})
            new_data = encode(source.path, edited)
            verify_edit(source, new_data, [function.index], "body")
        except (ValueError, SourceError):
            continue
        return Change(source, new_data, edited.encoding), candidate.text
    raise CompleteError(
        f"{path}:{function.line}: none of the {len(candidates)} bodies the model wrote for "
        f"{name} parses; try --samples 8 or a larger --beams",
        exit_code=1,
    )
