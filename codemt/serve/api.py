"""The bodies of the HTTP API's requests and responses, from which its OpenAPI schema is made.

They live apart from `codemt.serve.app` so that the command line (`codemt --help`) does not
import pydantic, which only the `serve` extra installs. Limits that the server's settings
can change (source size, new tokens) are checked by the server; fixed ones are declared
here, so that the schema shows them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from codemt.generation import GenerationSettings

# Beam widths and samples beyond this cost much and gain nothing on a shared server.
MAX_CANDIDATES = 8
# The most neighbours a request may carry (a model reads a few; the rest is waste).
MAX_CONTEXT = 16

Target = Literal["docstring", "body", "signature"]
Style = Literal["summary", "google", "numpy", "rest"]


class Generation(BaseModel):
    """How to generate (see `codemt.generation.GenerationSettings`); unknown fields are refused."""

    # NaN and infinities are refused (422), not carried into generation.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    num_beams: int = Field(
        GenerationSettings.num_beams,
        ge=1,
        le=MAX_CANDIDATES,
        description="1: greedy. Unset, a docstring written beside the project's own "
        f"summaries uses {GenerationSettings.memory_beams}; set, this width holds for all",
    )
    sample: bool = Field(False, description="sample instead of searching (needs num_beams=1)")
    num_samples: int = Field(1, ge=1, le=MAX_CANDIDATES, description="sequences drawn")
    # Far below 0.01 float32 logits divided by it overflow, and sampling fails; and 0.01
    # already samples all but greedily.
    temperature: float = Field(1.0, ge=0.01, le=100)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(
        GenerationSettings.max_new_tokens,
        ge=1,
        description="longest output in tokens; the server refuses more than its limit "
        "(GET /health shows it)",
    )
    no_repeat_ngram_size: int | None = Field(
        None,
        ge=0,
        description="never repeat this many tokens (0: allow; default: 4 for "
        "docstrings, 0 for code)",
    )
    length_penalty: float = Field(1.0, ge=-10, le=10)
    real_words: bool = Field(
        GenerationSettings.real_words,
        description="docstrings only in words of the training docstrings or the source "
        "(where GET /v1/model says real_words)",
    )
    name_weight: float = Field(
        GenerationSettings.name_weight,
        ge=0,
        allow_inf_nan=False,
        description="docstrings: rank candidates by score plus this times the share of the "
        "function's name and parameter words they mention (0: by score alone). Unset, a "
        f"docstring written beside the project's own summaries uses "
        f"{GenerationSettings.memory_name_weight}; set, this weight holds for all",
    )
    # CTranslate2 takes an unsigned 32-bit seed (others raised TypeError: a 500), torch one
    # of 64 bits (larger ones raised an unclear "Overflow when unpacking long long").
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="seeds sampling; batchmates share the seed"
    )


class ContextItem(BaseModel):
    """Another documented function of the project, for the model to read beside this one."""

    model_config = ConfigDict(extra="forbid")

    signature: str = Field(max_length=2_000, description="its `def` line")
    docstring: str = Field(max_length=10_000, description="its docstring (the summary is read)")
    body: str = Field(
        "",
        max_length=10_000,
        description="its body (read for body targets; for docstrings its first lines are "
        "compared with the function's: the more alike, the more its summary is trusted; "
        "without it, the signatures are compared)",
    )


class WithContext(BaseModel):
    """Project memory a request may carry."""

    context: list[ContextItem] | None = Field(
        None,
        max_length=MAX_CONTEXT,
        description="the project's documented functions most like this one, most alike first "
        "(a model trained with project memory reads a few; a docstring is written alone "
        "when none of the first three has code like the function's); none given: the "
        "memory of the project the server was started with (`--project`), if any; [] for "
        "none at all",
    )


class TranslateRequest(Generation, WithContext):
    """A function's source and the feature to write for it."""

    source: str = Field(
        description="a function (a signature alone is enough for a docstring or body); it "
        "is parsed, never run"
    )
    target: Target
    style: Style | None = Field(None, description="docstrings only; default summary")


class DocstringRequest(Generation, WithContext):
    """A file and which of its functions should get a docstring (by line, name or both)."""

    text: str = Field(description="the whole file; it is parsed, never run")
    line: int | None = Field(None, ge=1, description="1-based; any line of the function")
    function: str | None = Field(None, description="qualified name, e.g. Class.method")
    style: Style | None = Field(None, description="default summary")


class Timing(BaseModel):
    """Where a request's time went, in milliseconds."""

    queued_ms: float = Field(description="waiting for a batch to start")
    generate_ms: float = Field(description="the batch's generation")
    total_ms: float = Field(description="the whole request, parsing included")
    batch_size: int = Field(description="requests generated together with this one")


ORIGIN = (
    "docstrings written with project memory: whose summary this is, as written there or "
    "adapted to this function's names (\"the summary of read_orders (orders.py:30), its "
    "names adapted\"); empty when the model wrote it. The one to check: a sibling's "
    "sentence is wrong where the sibling does something else"
)


class Candidate(BaseModel):
    """One generated sequence (code targets keep all of them)."""

    text: str
    score: float | None = Field(description="log-probability per token (None if not finite)")
    parsed: bool | None


class TranslateResponse(BaseModel):
    """The generated feature."""

    text: str = Field(
        description="docstring without quotes, body indented by four spaces, signature on one line"
    )
    target: Target
    style: Style | None
    score: float | None
    parsed: bool | None = Field(description="code targets: whether the result parses")
    candidates: list[Candidate]
    origin: str = Field("", description=ORIGIN)
    timing: Timing


class Position(BaseModel):
    """A place in a file as the Language Server Protocol counts: 0-based, UTF-16 units."""

    line: int
    character: int


class Range(BaseModel):
    """From `start` to `end` (exclusive)."""

    start: Position
    end: Position


class TextEdit(BaseModel):
    """Replace `range` by `new_text` (an LSP TextEdit, with snake-case keys)."""

    range: Range
    new_text: str


class DocstringResponse(BaseModel):
    """The file with the docstring written, and the edit that writes it."""

    function: str = Field(description="qualified name of the function")
    line: int = Field(description="1-based line of its `def`")
    docstring: str
    origin: str = Field("", description=ORIGIN)
    text: str = Field(description="the edited file")
    edit: TextEdit
    timing: Timing


class LintRequest(BaseModel):
    """A file whose docstrings are checked against its code (no model runs)."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="the whole file; it is parsed, never run")
    select: list[str] = Field([], description="report only these codes or prefixes (DS1)")
    ignore: list[str] = Field([], description="leave out these codes or prefixes")


class Finding(BaseModel):
    """One disagreement between a docstring and its function (`codemt docstring --lint`)."""

    line: int = Field(description="1-based line of the function's `def`")
    function: str = Field(description="qualified name of the function")
    code: str = Field(description="DS001 ... DS900; see docs/docstring-upkeep.md")
    message: str


class LintResponse(BaseModel):
    """Every finding, in line order."""

    findings: list[Finding]


class UpdateRequest(Generation):
    """A file and which function's stale docstring to bring in line with its code."""

    text: str = Field(description="the whole file; it is parsed, never run")
    line: int | None = Field(None, ge=1, description="1-based; any line of the function")
    function: str | None = Field(None, description="qualified name, e.g. Class.method")
    describe: bool = Field(
        True, description="let the model describe the entries an update adds (else none)"
    )


class UpdateResponse(BaseModel):
    """The file with the docstring updated, the edit, and what it fixed."""

    function: str
    line: int
    fixed: list[Finding] = Field(description="the findings the update answers")
    text: str = Field(description="the edited file")
    edit: TextEdit
    timing: Timing


class ModelInfo(BaseModel):
    """Which model serves."""

    name: str = Field(
        description="the model's folder name (`run/step-000040`), or `default` for the shipped "
        "model; never a path of the server's machine"
    )
    preset: str | None
    parameters: int
    stage: str | None
    backend: str = Field(
        description="what runs the model: torch, torch-bf16, torch-int8 or ctranslate2"
    )
    real_words: bool = Field(
        description="whether docstrings can be kept to real words (`real_words`): the torch "
        "backend and a model that carries a word list"
    )
    device: str
    targets: list[str]
    styles: list[str]
    modes: list[str] = Field(description="source features -> target the model can translate")
    reads_context: bool = Field(
        False, description="whether the model was trained to read project memory (`context`)"
    )
    project_functions: int = Field(
        0, description="documented functions in the memory of the server's --project"
    )
    codemt_version: str | None


class Limits(BaseModel):
    """What the server refuses."""

    max_source_bytes: int
    max_file_bytes: int
    max_new_tokens: int
    max_candidates: int
    max_queue: int
    timeout_s: float


class Health(BaseModel):
    """The server is up; how busy it is."""

    status: Literal["ok"]
    queued: int = Field(description="requests waiting for a batch")
    limits: Limits


class Error(BaseModel):
    """A refused request and why."""

    detail: str
