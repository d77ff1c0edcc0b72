"""`codemt translate` on the command line, and the arguments every generating command
shares (`add_model_arguments`, `generation_settings`, `load_for_project`).

The work is `codemt.translate.Translator`; this module reads a file's methods, parses the
arguments into settings, and prints what the model wrote.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codemt.backends import BACKEND_CHOICES
from codemt.examples import DOCSTRING_STYLES
from codemt.generation import GenerationSettings, borrowed_note
from codemt.memory import ProjectMemory, open_project_memory
from codemt.source.extract import extract_methods
from codemt.source.reading import SkipFile, decode_source, parse_with_repairs
from codemt.translate import DEFAULT_MODEL, TARGETS, Translator


class CommandError(Exception):
    """A user error the command reports in one line, with exit code 2."""


def _read_source(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    file = Path(path)
    if not file.is_file():
        raise CommandError(f"{path}: no such file")

    try:
        return decode_source(file.read_bytes(), max_bytes=10_000_000)
    except SkipFile as error:
        raise CommandError(f"{path}: {error}") from None


def split_location(location: str) -> tuple[str, str | None]:
    """`FILE[:FUNCTION]` as (file, function or None); a colon in an existing path is kept."""
    path, sep, function = location.rpartition(":")
    if not sep or Path(location).exists() or not re.fullmatch(r"[\w.<>]+", function):
        return location, None
    return path, function


def file_methods(path: str, source: str) -> list[dict[str, Any]]:
    """Every function and method in a file's source, as records named by qualified name."""
    try:
        tree = parse_with_repairs(source)[0]
    except SkipFile as error:
        message = str(error)  # "line N: message" for syntax errors
        if message.startswith("line "):
            line, _, message = message[5:].partition(": ")
            raise CommandError(f"{path}:{line}: {message}") from None
        raise CommandError(f"{path}: {message}") from None
    return [record for _, record in extract_methods(tree, repo="", path=path)]


def _settings_from_args(args: argparse.Namespace) -> GenerationSettings:
    if args.sample:
        return generation_settings(
            args,
            num_beams=1,
            sample=True,
            num_samples=args.beams or 1,
            temperature=args.temperature,
            top_p=args.top_p,
            seed=args.seed,
        )
    return generation_settings(args, num_beams=1 if args.greedy else args.beams)


def _translate_command(args: argparse.Namespace) -> int:
    try:
        path, function = split_location(args.location)
        records = file_methods(path, _read_source(path))
        if function is not None:
            chosen = [r for r in records if r["name"] == function]
            if not chosen:
                names = ", ".join(r["name"] for r in records) or "none"
                raise CommandError(
                    f"{path}: no function {function!r}; the functions in it are: {names}"
                )
            records = chosen
        if not records:
            raise CommandError(f"{path}: no function in this file")
        translator = load_for_project(args, [path], _settings_from_args(args))
        results = translator.translate_batch(
            records, args.target, args.style, progress=len(records) > 32
        )
    except (CommandError, ValueError, FileNotFoundError) as error:
        print(f"codemt translate: error: {error}", file=sys.stderr)
        return 2
    for record, result in zip(records, results, strict=True):
        if function is None:
            print(f"# {record['name']}")
        print(result.text)
        if result.origin:  # a sibling's summary: said beside the text, not in it
            sys.stdout.flush()  # after the text it is about, also where both go to one place
            where = f"{path}:{record['lineno']}" if record.get("lineno") else path
            print(f"{where}: {borrowed_note(record['name'], result.origin)}", file=sys.stderr)
        if function is None:
            print()
    return 0


def load_for_project(
    args: argparse.Namespace,
    paths: Sequence[str | Path],
    settings: GenerationSettings | None = None,
) -> Translator:
    """The model of a command that writes for a project's files (`--model`, `--backend`),
    with the project's memory (`--project`, `--memory`) where the model reads one."""
    translator = Translator.load(args.model, settings=settings, backend=args.backend)
    if translator.reads_neighbors:
        translator.memory = open_memory(args, [p for p in paths if p != "-"])
    elif getattr(args, "project", None):
        print(
            f"codemt: {translator.path} was not trained to read project memory: --project "
            f"is ignored",
            file=sys.stderr,
        )
    return translator


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--backend auto|torch|torch-bf16|torch-int8|ctranslate2` to a command that
    loads a `Translator`.

    Pass `args.backend` on as `Translator.load(..., backend=args.backend)`.
    """
    parser.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help="what runs the model: torch (float32, the reference); torch-bf16 (bfloat16, on "
        "a CPU with AVX-512 BF16 or AMX); torch-int8 (its linear layers quantized as it "
        "loads, CPU); or ctranslate2 for a model exported with `codemt export`; auto "
        "(default) takes ctranslate2 when it is installed and the model has an export, else "
        "torch-bf16 where the CPU has bfloat16 instructions, else torch",
    )


def generation_settings(args: argparse.Namespace, **settings: Any) -> GenerationSettings:
    """GenerationSettings from a command's `--max-new-tokens`, `--no-repeat-ngram`,
    `--any-words` and `--name-weight`, and `settings` (beams, sampling, batch size) as the
    command decides them. `num_beams=None` (no `--beams`) keeps the default widths: 4, and
    `memory_beams` beside the project's summaries; a `--beams N` given is N for all. So
    for `--name-weight`: unset, the default weights; given, that weight for all."""
    if "num_beams" in settings and settings["num_beams"] is None:
        # No --beams: the default widths, narrower beside the project's summaries.
        settings.pop("num_beams")
    elif getattr(args, "beams", None) is not None:
        settings.setdefault("memory_beams", None)  # a width asked for holds everywhere
    if args.name_weight is not None:
        settings.update(name_weight=args.name_weight, memory_name_weight=None)
    return GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        no_repeat_ngram_size=args.no_repeat_ngram,
        real_words=not args.any_words,
        **settings,
    )


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--no-repeat-ngram N`, `--any-words` and `--name-weight W`
    (GenerationSettings.no_repeat_ngram_size, real_words and name_weight)."""
    parser.add_argument(
        "--no-repeat-ngram",
        type=int,
        default=None,
        metavar="N",
        help="never repeat a sequence of N tokens (0: allow; default: 4 for docstrings, 0 for "
        "code); 4 to 6 stops the runaway repetition of an under-trained model in code bodies",
    )
    parser.add_argument(
        "--any-words",
        action="store_true",
        help="let docstrings use words that neither the training docstrings nor the method "
        "hold (by default a model with a word list writes only those: no 'restount' made "
        "of stray sub-words)",
    )
    parser.add_argument(
        "--name-weight",
        type=float,
        default=None,
        metavar="W",
        help="docstrings: rank the candidates by score plus W times the share of the "
        "function's name and parameter words they mention (0: by score alone; default: "
        f"{GenerationSettings.name_weight}, and {GenerationSettings.memory_name_weight} "
        "beside the project's own summaries)",
    )


def add_memory_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--project DIR` and `--memory project|none` to a command that writes with a model."""
    parser.add_argument(
        "--project",
        metavar="DIR",
        default=None,
        help="the project whose documented functions the model reads beside each function "
        "(default: the nearest folder above the first path holding .git, pyproject.toml, "
        "setup.py or setup.cfg)",
    )
    parser.add_argument(
        "--memory",
        choices=("project", "none"),
        default="project",
        help="project: write with the project's memory (default); none: each function alone",
    )


def open_memory(args: argparse.Namespace, paths: Sequence[str | Path]) -> ProjectMemory | None:
    """The project memory a command's `--project` / `--memory` ask for, or None."""
    if getattr(args, "memory", "project") == "none":
        return None
    project = Path(args.project) if getattr(args, "project", None) else None
    return open_project_memory(paths, project=project)


# What `--beams` says of its default, for every command that has it.
BEAMS_HELP = (
    f"beam width (default: {GenerationSettings.num_beams}, and "
    f"{GenerationSettings.memory_beams} for a docstring written beside the project's own "
    "summaries; given, it holds for all)"
)


def add_model_arguments(
    parser: argparse.ArgumentParser,
    *,
    generation: bool = True,
    beams_help: str = "",
    batch_size: bool = False,
) -> None:
    """The model options of the commands that put a model to use (translate, docstring,
    complete, lsp, serve): `--model` and `--backend`, and with `generation` also `--beams`,
    `--max-new-tokens`, `--no-repeat-ngram`, `--any-words` and `--name-weight` (and
    `--batch-size` if asked)."""
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="checkpoint, run folder or export, or 'default' for the shipped model (default)",
    )
    add_backend_argument(parser)
    if not generation:
        return
    parser.add_argument(
        "--beams",
        type=int,
        default=None,
        metavar="N",
        help=BEAMS_HELP + beams_help,
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=GenerationSettings.max_new_tokens,
        metavar="N",
        help="longest generated text in tokens (default: %(default)s)",
    )
    add_decoding_arguments(parser)
    if batch_size:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=GenerationSettings.batch_size,
            metavar="N",
            help="inputs generated together (default: %(default)s)",
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `codemt translate` to the command line."""
    parser = subparsers.add_parser(
        "translate",
        help="write a function's docstring, body or signature with a model",
        description="Translate a function of a file into its docstring, body or signature "
        "and print the result. Without FUNCTION, every function of the file is translated.",
    )
    parser.add_argument(
        "location",
        metavar="FILE[:FUNCTION]",
        help="a Python file ('-' for stdin), optionally with a function's qualified name "
        "(e.g. Class.method)",
    )
    parser.add_argument("--target", required=True, choices=TARGETS, help="what to write")
    parser.add_argument(
        "--style",
        choices=[s for s in DOCSTRING_STYLES if s != "author"],
        default=None,
        help="docstring style (default: summary)",
    )
    decoding = parser.add_mutually_exclusive_group()
    decoding.add_argument("--greedy", action="store_true", help="greedy decoding")
    decoding.add_argument("--sample", action="store_true", help="sample instead of beam search")
    parser.add_argument("--temperature", type=float, default=1.0, metavar="T")
    parser.add_argument("--top-p", type=float, default=1.0, metavar="P")
    parser.add_argument(
        "--seed", type=int, default=None, help="seed for --sample (--beams: how many)"
    )
    add_model_arguments(parser, beams_help="; with --sample, samples drawn")

    add_memory_arguments(parser)
    parser.set_defaults(func=_translate_command)
