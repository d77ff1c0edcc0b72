"""From a parsed file to method records: one per function or method, with its features.

Each method is split into the paper's features: the signature (the `def` line, decorators
excluded), the docstring and the body, each unparsed back from the AST so formatting is
normalised and comments are gone, as in the paper. Context features ride along: the
enclosing class (name, bases, docstring), the decorators and the file's imports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

from codemt.source.docstrings import clean_docstring, detect_style

MAX_IMPORTS = 64
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_NO_ARGS = ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[])


@dataclass(frozen=True)
class _Scope:
    """Where a definition sits: its qualified-name prefix and enclosing class, if directly in one."""

    prefix: str
    class_node: ast.ClassDef | None


def signature_of(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The normalised `def` line of a function: `[async ]def name[type params](args) -> ret:`."""
    keyword = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    type_params = getattr(node, "type_params", None)  # Python >= 3.12
    generic = f"[{', '.join(ast.unparse(p) for p in type_params)}]" if type_params else ""
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    return f"{keyword} {node.name}{generic}({ast.unparse(node.args)}){returns}:"


def docstring_node(node: ast.AST) -> ast.Constant | None:
    """The string constant that is the docstring of a function, class or module, if any."""
    body = getattr(node, "body", None)
    if body and isinstance(body[0], ast.Expr):
        value = body[0].value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value
    return None


def body_of(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The unparsed body without the docstring, indented by four spaces ("" if only a docstring)."""
    statements = node.body[1:] if docstring_node(node) is not None else node.body
    if not statements:
        return ""
    # Unparse inside a bare function so the unparser indents (nested docstrings included).
    shell = ast.FunctionDef(
        name="f", args=_NO_ARGS, body=statements, decorator_list=[], returns=None, lineno=0
    )
    return ast.unparse(shell).split("\n", 1)[1].lstrip("\n")


def module_imports(tree: ast.Module) -> list[str]:
    """The import statements at module level (inside `try`/`if` blocks too), unparsed."""
    imports: list[str] = []
    stack = list(reversed(tree.body))
    while stack and len(imports) < MAX_IMPORTS:
        stmt = stack.pop()
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            imports.append(ast.unparse(stmt))
        elif isinstance(stmt, ast.Try | ast.If):
            handlers = [h for h in getattr(stmt, "handlers", [])]
            blocks = stmt.body + [s for h in handlers for s in h.body] + stmt.orelse
            stack.extend(reversed(blocks))
    return imports


def _walk_definitions(
    body: list[ast.stmt], scope: _Scope
) -> Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef, _Scope]]:
    """Yield every function in a block with its scope, descending into nested definitions.

    Compound statements (if/try/with/for/while/match) are searched too, since methods
    defined under `if sys.version_info ...` are common.
    """
    for stmt in body:
        if isinstance(stmt, _FUNCTIONS):
            yield stmt, scope
            inner = _Scope(f"{scope.prefix}{stmt.name}.<locals>.", None)
            yield from _walk_definitions(stmt.body, inner)
        elif isinstance(stmt, ast.ClassDef):
            inner = _Scope(f"{scope.prefix}{stmt.name}.", stmt)
            yield from _walk_definitions(stmt.body, inner)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                block = getattr(stmt, field, None)
                if not block:
                    continue
                if field in ("handlers", "cases"):
                    for clause in block:
                        yield from _walk_definitions(clause.body, scope)
                else:
                    yield from _walk_definitions(block, scope)


def _bases(cls: ast.ClassDef) -> list[str]:
    """Base classes and class keywords (`metaclass=...`) as written in the class statement."""
    return [ast.unparse(b) for b in cls.bases] + [ast.unparse(k) for k in cls.keywords]


def extract_methods(
    tree: ast.Module, *, repo: str, path: str
) -> Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef, dict]]:
    """Yield `(node, record)` for every function and method in a parsed file (split left empty).

    A method whose unparsing recurses too deeply is skipped; the caller counts records.
    """
    imports = module_imports(tree)
    class_docs: dict[int, str] = {}
    for node, scope in _walk_definitions(tree.body, _Scope("", None)):
        try:
            signature = signature_of(node)
            body = body_of(node)
            decorators = [ast.unparse(d) for d in node.decorator_list]
        except RecursionError:
            continue
        doc = docstring_node(node)
        raw = doc.value if doc is not None else ""
        docstring = clean_docstring(raw)
        cls = scope.class_node
        if cls is not None and id(cls) not in class_docs:
            class_doc = docstring_node(cls)
            class_docs[id(cls)] = clean_docstring(class_doc.value) if class_doc else ""
        yield (
            node,
            {
                "repo": repo,
                "path": path,
                "name": scope.prefix + node.name,
                "lineno": node.lineno,
                "signature": signature,
                "docstring": docstring,
                "docstring_raw": raw,
                "body": body,
                "decorators": decorators,
                "class_name": cls.name if cls is not None else "",
                "class_bases": _bases(cls) if cls is not None else [],
                "class_docstring": class_docs[id(cls)] if cls is not None else "",
                "imports": imports,
                "docstring_style": detect_style(docstring),
                "is_async": isinstance(node, ast.AsyncFunctionDef),
                "split": "",
            },
        )


def _rebuilt_literal(docstring: str, indent: str = "    ") -> str:
    """A docstring as `method_source` puts it back: a triple-quoted literal, indented for a
    function body, that parses to the same text (unwrapped: the literal users' files get
    is `codemt.write.apply.docstring_literal`'s)."""
    quote = '"""' if '"""' not in docstring else "'''"
    text = docstring.replace("\\", "\\\\")
    if text.endswith(quote[0]):
        text += " "
    lines = text.split("\n")
    indented = "\n".join([lines[0]] + [indent + line if line else line for line in lines[1:]])
    return f"{indent}{quote}{indented}{quote}"


def method_source(record: dict, *, with_docstring: bool = True, raw: bool = True) -> str:
    """Rebuild a method's source from its features (decorators excluded).

    With `raw`, the docstring as the author wrote it (cleaned by `inspect.cleandoc`) is
    used, else the cleaned docstring.
    """
    parts = [record["signature"]]
    docstring = (record["docstring_raw"] if raw else record["docstring"]) if with_docstring else ""
    if docstring.strip():
        import inspect

        parts.append(_rebuilt_literal(inspect.cleandoc(docstring)))
    if record["body"]:
        parts.append(record["body"])
    elif len(parts) == 1:
        parts.append("    pass")
    return "\n".join(parts) + "\n"
