"""The Translator API and `codemt translate`: parsing, features, post-processing, selection."""

import ast
import dataclasses
import inspect
import io
import json
import shutil

import pytest

from codemt.cli import main
from codemt.cli.translate import split_location
from codemt.corpus import Corpus, iter_records
from codemt.examples import Mode
from codemt.generation import (
    Candidate,
    GenerationSettings,
    choose_candidate,
    finish_body,
    finish_docstring,
    finish_signature,
    fix_articles,
    method_name_words,
    name_coverage,
)
from codemt.token_cache import TokenCache
from codemt.translate import Translator, example_settings, parse_method, source_features, structured

ADD = '''def add(a: int, b: int = 1) -> int:
    """Add two numbers.

    Returns their sum.
    """
    total = a + b  # comments vanish, as in training
    return total
'''

MODULE = '''import os


def top(x):
    return os.path.join(x, "a")


class Box:
    """A box."""

    def size(self):
        """How big it is."""
        return 3

    async def fetch(self, url):
        return url
'''


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def translator(tiny_model) -> Translator:
    # The float32 reference (elsewhere `auto` may take bfloat16: test_backends.py).
    return Translator.load(
        tiny_model, backend="torch", settings=GenerationSettings(max_new_tokens=12)
    )


# ------------------------------------------------------------------ settings


def test_generation_settings_reject_bad_values():
    assert GenerationSettings().candidates == 4
    assert GenerationSettings(num_beams=1, sample=True, num_samples=3).candidates == 3
    bad = [
        {"num_beams": 0},
        {"max_new_tokens": 0},
        {"batch_size": 0},
        {"sample": True},  # num_beams stays 4
        {"num_samples": 2},  # without sampling
        {"num_beams": 1, "sample": True, "temperature": 0.0},
        {"num_beams": 1, "sample": True, "top_p": 0.0},
        {"num_beams": 1, "sample": True, "top_p": 1.5},
        {"no_repeat_ngram_size": -1},
        {"name_weight": -1.0},
        {"name_weight": float("inf")},
        {"name_weight": float("nan")},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            GenerationSettings(**kwargs)


@pytest.mark.parametrize("command", ["docstring", "evaluate", "lsp", "translate", "complete"])
def test_beams_and_name_weights_asked_for_hold_everywhere(command):
    """Unset, the defaults: beside the project's summaries, 1 beam and name weight 6;
    `--beams` and `--name-weight` given hold for every method."""
    from codemt.cli import build_parser
    from codemt.cli.complete import _generation
    from codemt.cli.translate import _settings_from_args, generation_settings

    needs = {"evaluate": ["m", "--data", "d"], "lsp": [], "translate": ["x.py", "--target", "body"]}
    parser = build_parser()
    builders = {"translate": _settings_from_args, "complete": _generation}
    build = builders.get(command, lambda args: generation_settings(args, num_beams=args.beams))
    args = parser.parse_args([command, *needs.get(command, ["x.py"])])
    assert args.beams is None
    default = build(args)
    assert (default.num_beams, default.memory_beams) == (4, 1)
    assert (default.name_weight, default.memory_name_weight) == (2.0, 6.0)
    asked = build(parser.parse_args([command, *needs.get(command, ["x.py"]), "--beams", "6"]))
    assert (asked.num_beams, asked.memory_beams) == (6, None)
    weighed = build(
        parser.parse_args([command, *needs.get(command, ["x.py"]), "--name-weight", "1"])
    )
    assert (weighed.name_weight, weighed.memory_name_weight) == (1.0, None)
    assert weighed.with_offered_summaries().name_weight == 1.0


def test_translate_greedy_and_sampling_keep_their_one_sequence_or_samples():
    from codemt.cli import build_parser
    from codemt.cli.translate import _settings_from_args

    parser = build_parser()
    command = ["translate", "x.py", "--target", "docstring"]
    greedy = _settings_from_args(parser.parse_args([*command, "--greedy"]))
    assert (greedy.num_beams, greedy.with_offered_summaries().num_beams) == (1, 1)
    drawn = _settings_from_args(parser.parse_args([*command, "--sample", "--beams", "3"]))
    beside = drawn.with_offered_summaries()
    assert (beside.num_beams, beside.candidates, drawn.candidates) == (1, 3, 3)


def test_no_repeat_ngram_is_set_by_target_unless_given():
    settings = GenerationSettings()
    assert settings.for_target("docstring").no_repeat_ngram_size == 4
    assert settings.for_target("body").no_repeat_ngram_size == 0
    assert settings.for_target("signature").no_repeat_ngram_size == 0
    allowed = GenerationSettings(no_repeat_ngram_size=0)
    assert allowed.for_target("docstring") is allowed


def test_example_settings_come_from_the_checkpoint_meta():
    recorded = {"max_source_tokens": 100, "max_target_tokens": 20}
    assert example_settings({"examples": recorded}).max_source_tokens == 100
    assert example_settings({"modes": {"examples": recorded}}).max_target_tokens == 20
    # Not recorded: the defaults, with the preset's context as the source length.
    assert example_settings({"preset": "tiny", "context": 256}).max_source_tokens == 256
    assert example_settings({"preset": "small"}).max_source_tokens == 512


# ------------------------------------------------------------------ reading methods


def test_parse_method_gives_the_features_of_training():
    record = parse_method(ADD)
    assert record["signature"] == "def add(a: int, b: int=1) -> int:"
    assert record["docstring"] == "Add two numbers.\n\nReturns their sum."
    assert record["body"] == "    total = a + b\n    return total"
    assert record["docstring_style"] == "other"


def test_parse_method_takes_partial_and_indented_methods():
    only_signature = parse_method("def add(a, b):")
    assert only_signature["signature"] == "def add(a, b):" and only_signature["body"] == ""
    multi_line = parse_method("def add(\n    a,\n    b,\n):\n")
    assert multi_line["signature"] == "def add(a, b):" and multi_line["body"] == ""
    with_docstring = parse_method('def add(a, b):\n    """Sum."""')
    assert with_docstring["docstring"] == "Sum." and with_docstring["body"] == ""
    # As copied out of a class, and as CodeSearchNet stores methods (body indented more).
    assert parse_method("    def size(self):\n        return 3\n")["body"] == "    return 3"
    assert parse_method("def f(self):\n        return 3")["body"] == "    return 3"
    body_only = parse_method("def f(x):\n    pass")
    assert body_only["body"] == "    pass"  # a real `pass` is kept


def test_parse_method_names_the_line_of_bad_input():
    with pytest.raises(ValueError, match="line 2"):
        parse_method("def f(x):\n    return )\n")
    with pytest.raises(ValueError, match="line 1: not a function"):
        parse_method("x = 1\n")
    with pytest.raises(ValueError, match="not a function"):
        parse_method("class A:\n    def f(self):\n        pass\n")


def test_sources_are_every_other_feature_the_method_has():
    record = parse_method(ADD)
    assert source_features(record, "docstring") == ("signature", "body")
    assert source_features(record, "body") == ("signature", "docstring")
    assert source_features(record, "signature") == ("docstring", "body")
    bare = parse_method("def f(x):")
    assert source_features(bare, "docstring") == ("signature",)
    with pytest.raises(ValueError, match="nothing to translate from"):
        source_features({"signature": "def f():", "docstring": "", "body": ""}, "signature")
    with pytest.raises(ValueError, match="unknown target"):
        source_features(record, "class")


# ------------------------------------------------------------------ post-processing


def test_finish_docstring_strips_quotes_and_dedents():
    assert finish_docstring('"""Add two numbers."""') == "Add two numbers."
    assert finish_docstring("'''Add.\n\n    Args:\n        a: one.\n    '''") == (
        "Add.\n\nArgs:\n    a: one."
    )
    assert finish_docstring("  Add two numbers.\n  ") == "Add two numbers."


def test_finish_body_indents_by_four_spaces():
    assert finish_body("    return x\n") == "    return x"
    assert finish_body("\nif x:\n    return 1\nreturn 2") == (
        "    if x:\n        return 1\n    return 2"
    )
    assert finish_body("  return x") == "    return x"  # two spaces: re-indented
    body = finish_body("for i in x:\n    yield i")
    assert ast.parse(f"def f(x):\n{body}")


def test_finish_signature_is_one_line():
    assert finish_signature(" def f(a,\n  b):\n") == "def f(a, b):"


def test_syntax_aware_choice_prefers_a_parsing_candidate():
    broken = Candidate("    return (", -0.1, False)
    fine = Candidate("    return 1", -0.9, True)
    finer = Candidate("    return 2", -0.5, True)
    assert choose_candidate([broken, fine]) is fine
    assert choose_candidate([broken, fine, finer]) is finer
    # None parses: the best-scored one.
    worse = Candidate("    return )", -0.7, False)
    assert choose_candidate([worse, broken]) is broken
    # Docstrings do not parse at all: the best-scored one.
    a, b = Candidate("Add.", -0.2, None), Candidate("Sum.", -0.3, None)
    assert choose_candidate([b, a]) is a


def test_name_coverage_counts_the_method_names_a_docstring_mentions():
    record = {"name": "loadConfig", "signature": "def loadConfig(self, file_paths, x=1):"}
    words = method_name_words(record)
    assert words == {"load", "config", "file", "path"}  # no self, no one-letter names
    assert method_name_words({"name": "f", "signature": "def f(matches, *args, **kwargs):"}) == {
        "match"
    }
    assert name_coverage(words, "Load the configuration.") == 0.25
    assert name_coverage(words, "Load a `Config` from the file paths.") == 1.0
    assert name_coverage(words, "Read settings from disk.") == 0.0
    assert name_coverage(set(), "Anything.") == 0.0
    # Without a signature, the name alone.
    assert method_name_words({"name": "Parser.parse_header", "signature": ""}) == {
        "parse",
        "header",
    }


def test_name_weight_trades_score_for_coverage():
    generic = Candidate("Return a list.", -0.9, None, coverage=0.0)
    named = Candidate("Load the config.", -1.2, None, coverage=1.0)
    assert choose_candidate([generic, named]) is generic
    assert choose_candidate([generic, named], name_weight=2.0) is named
    assert choose_candidate([generic, named], name_weight=0.2) is generic


# ------------------------------------------------------------------ the model


@pytest.mark.parametrize("name_words", [False, True])
def test_inputs_match_the_training_examples(
    translator, small_corpus, small_tokenizer, tmp_path, monkeypatch, name_words
):
    """The translator builds exactly the ids the token cache and `build_translation` train on."""
    from codemt.examples import Vocabulary, build_translation
    from codemt.token_cache import spread_rows

    examples = dataclasses.replace(translator.examples, name_words=name_words)
    monkeypatch.setattr(translator, "examples", examples)

    cache = TokenCache.build(
        Corpus.open(small_corpus), "train", small_tokenizer, tmp_path, limit=20
    )
    split = list(iter_records(small_corpus, "train"))
    records = [split[i] for i in spread_rows(len(split), 20)]
    assert len(cache) == len(records) == 20
    vocab = Vocabulary.from_tokenizer(small_tokenizer)
    for target in ("docstring", "body", "signature"):
        chosen = [i for i, r in enumerate(records) if r["docstring"] and r["body"]]
        ours = translator.encode([records[i] for i in chosen], target)
        mode = Mode(tuple(f for f in ("signature", "docstring", "body") if f != target), target)
        style = "summary" if target == "docstring" else None
        trained = [
            build_translation(cache.fields(i), mode, style, vocab, translator.examples)[0]
            for i in chosen
        ]
        assert ours == trained
        # The signature's names as words follow it exactly when asked and it is a source.
        for source, i in zip(ours, chosen, strict=True):
            names = cache.ids(i, "names").tolist()
            assert names, records[i]["signature"]
            found = any(source[k : k + len(names)] == names for k in range(len(source)))
            assert found == (name_words and target != "signature")
    # The style is the second token of a docstring source.
    google = translator.encode([records[chosen[0]]], "docstring", "google")[0]
    assert google[1] == vocab.styles["google"]


def test_translate_gives_usable_text_for_every_target(translator, monkeypatch):
    generated = {
        "docstring": '"""Add a and b.\n\n    Returns their sum.\n    """',
        "body": "return a + b\n\n",
        "signature": "def add(a,\n        b):",
    }
    real = translator._generate
    wanted = []

    def fixed(sources, n_return, settings, *, words=False):
        return [[(generated[wanted[-1]], -0.1)] * n_return for _ in sources]

    monkeypatch.setattr(translator, "_generate", fixed)
    # What the model writes comes back finished for its target: quotes and indentation
    # of a docstring off, a body indented, a signature on one line.
    for target, finished in [
        ("docstring", "Add a and b.\n\nReturns their sum."),
        ("body", "    return a + b"),
        ("signature", "def add(a, b):"),
    ]:
        wanted.append(target)
        [result] = translator.translate_batch([ADD if target != "body" else "def add(a, b):"],
                                              target)  # fmt: skip
        assert result.text == finished
    monkeypatch.setattr(translator, "_generate", real)
    docstring = translator.translate(ADD, "docstring")
    assert docstring.strip() and not docstring.startswith('"""')
    assert docstring == inspect.cleandoc(docstring)
    body = translator.translate_batch(["def add(a, b):"], "body")[0]
    assert all(line.startswith("    ") for line in body.text.split("\n") if line.strip())
    assert len(body.candidates) == 4
    assert [c.score for c in body.candidates] == sorted(
        (c.score for c in body.candidates), reverse=True
    )
    assert body.parsed == any(c.parsed for c in body.candidates)
    signature = translator.translate_batch([ADD], "signature")[0]
    assert "\n" not in signature.text and signature.parsed is not None
    with pytest.raises(ValueError, match="style"):
        translator.translate(ADD, "body", "google")


def test_batches_keep_the_order_of_the_methods(translator):
    methods = [ADD, "def f(x):\n    return [i for i in range(x) if i % 2]\n", "def g(): pass"]
    greedy = GenerationSettings(num_beams=1, max_new_tokens=8, batch_size=2)
    together = translator.translate_batch(methods, "docstring", settings=greedy)
    alone = [translator.translate_batch([m], "docstring", settings=greedy)[0] for m in methods]
    assert [t.text for t in together] == [t.text for t in alone]
    assert [t.parsed for t in together] == [None] * 3
    with pytest.raises(ValueError, match="method 1: line 1"):
        translator.translate_batch([ADD, "x = 1"], "docstring")


def test_docstrings_are_chosen_by_score_and_name_coverage(translator, monkeypatch):
    asked = []

    def generate(sources, n_return, settings, *, words=False):
        asked.append((n_return, settings.no_repeat_ngram_size))
        beams = [("Return a list.", -0.5), ("Load the config file.", -0.9)]
        return [beams[:n_return] for _ in sources]

    monkeypatch.setattr(translator, "_generate", generate)
    method = "def load_config(path):\n    return open(path).read()\n"
    settings = dataclasses.replace(translator.settings, num_beams=2)
    chosen = translator.translate_batch([method], "docstring", settings=settings)[0]
    assert (chosen.text, chosen.score) == ("Load the config file.", -0.9)
    off = dataclasses.replace(settings, name_weight=0.0)
    assert translator.translate_batch([method], "docstring", settings=off)[0].text == (
        "Return a list."
    )
    assert asked == [(2, 4), (2, 4)]  # every beam; docstrings never repeat 4 tokens
    # A source without the signature gives the model no names to reward.
    body_only = translator.translate_batch(
        [method], "docstring", sources=["body"], settings=settings
    )[0]
    assert body_only.text == "Return a list."


def test_sampling_is_reproducible_with_a_seed(translator):
    sample = GenerationSettings(num_beams=1, sample=True, num_samples=3, seed=3, top_p=0.9)
    first = translator.translate_batch([ADD], "body", settings=sample)[0]
    second = translator.translate_batch([ADD], "body", settings=sample)[0]
    assert len(first.candidates) == 3
    assert first == second


@pytest.fixture
def no_default_model(tmp_path, monkeypatch):
    """An installation without the shipped model (a wheel built without models/)."""
    monkeypatch.setattr(
        "codemt.translate.DEFAULT_MODEL_DIRS", (tmp_path / "package", tmp_path / "checkout")
    )


def test_a_missing_default_model_says_where_it_looked(no_default_model):
    with pytest.raises(FileNotFoundError, match="not installed.*package.*checkpoint path"):
        Translator.load("default")


# ------------------------------------------------------------------ the command line


def test_split_location():
    assert split_location("a.py:Box.size") == ("a.py", "Box.size")
    assert split_location("a.py") == ("a.py", None)
    assert split_location("-:top") == ("-", "top")
    assert split_location(r"C:\code\a.py") == (r"C:\code\a.py", None)


def test_translate_command(tmp_path, tiny_model, capsys, monkeypatch):
    path = tmp_path / "module.py"
    path.write_text(MODULE, encoding="utf-8")
    model = ["--model", str(tiny_model), "--max-new-tokens", "8"]

    assert main(["translate", f"{path}:Box.size", "--target", "docstring", *model]) == 0
    out = capsys.readouterr().out
    assert out.strip() and "#" not in out

    assert main(["translate", str(path), "--target", "body", "--greedy", *model]) == 0
    out = capsys.readouterr().out
    for name in ("top", "Box.size", "Box.fetch"):
        assert f"# {name}\n" in out

    # --no-repeat-ngram reaches generation: with 1, no token repeats in an output.
    seen = []
    original = Translator.translate_batch

    def spy(self, *args, **kwargs):
        seen.append(self.settings.no_repeat_ngram_size)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Translator, "translate_batch", spy)
    command = ["translate", str(path), "--target", "body", "--greedy", "--no-repeat-ngram", "1"]
    assert main([*command, *model]) == 0
    assert seen == [1]
    monkeypatch.setattr(Translator, "translate_batch", original)
    capsys.readouterr()

    monkeypatch.setattr("sys.stdin", io.StringIO("def f(x):\n    return x\n"))
    command = ["translate", "-", "--target", "signature", "--sample", "--seed", "1"]
    assert main([*command, *model]) == 0
    assert capsys.readouterr().out.startswith("# f\n")


def test_translate_command_errors(tmp_path, tiny_model, capsys, no_default_model):
    path = tmp_path / "module.py"
    path.write_text(MODULE, encoding="utf-8")
    model = ["--target", "docstring", "--model", str(tiny_model)]

    assert main(["translate", str(tmp_path / "missing.py"), *model]) == 2
    assert "missing.py: no such file" in capsys.readouterr().err

    assert main(["translate", f"{path}:nope", *model]) == 2
    err = capsys.readouterr().err
    assert "no function 'nope'" in err and "top, Box.size, Box.fetch" in err

    broken = tmp_path / "broken.py"
    broken.write_text("x = 1\ndef f(:\n", encoding="utf-8")
    assert main(["translate", str(broken), *model]) == 2
    err = capsys.readouterr().err
    assert f"{broken}:2: " in err and "Traceback" not in err

    assert main(["translate", str(path), "--target", "body", "--model", "default"]) == 2
    assert "default model is not installed" in capsys.readouterr().err

    # A run folder's checkpoint copied elsewhere loads as a checkpoint folder.
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_model / (tiny_model / "latest").read_text().strip(), checkpoint)
    meta = json.loads((checkpoint / "codemt.json").read_text())
    assert meta["modes"]["examples"]["max_target_tokens"] == 64
    assert main(["translate", f"{path}:top", "--model", str(checkpoint), "--target", "body"]) == 0


@pytest.mark.parametrize(
    "text, fixed",
    [
        ("Create a init file.", "Create an init file."),
        ("Return an naturalsize.", "Return a naturalsize."),
        ("A apple for an user, an hour, a HTTP call and an URL.", None),
        ("Add a and b.", "Add a and b."),
        ("Use `a init` as is.", "Use `a init` as is."),
    ],
)
def test_articles_agree_with_the_next_word(text, fixed):
    expected = fixed or "An apple for a user, an hour, an HTTP call and a URL."
    assert fix_articles(text) == expected


def test_a_generated_summary_ends_with_a_period_and_sections_are_left_as_they_are():
    assert finish_docstring("Return the sum") == "Return the sum."
    assert finish_docstring("Return the sum\n\nMore text") == "Return the sum.\n\nMore text"
    assert finish_docstring("Args:\n    x: y") == "Args:\nx: y"
    assert finish_docstring("Is it?") == "Is it?"


def test_a_sectioned_docstring_takes_its_sections_from_the_code():
    """The model listed a parameter twice, invented one, left Returns empty and broke a
    bracket: the sections come from the code, the descriptions from the model."""
    from codemt.generation import Translation
    from codemt.translate import method_record

    record = method_record(
        "def scale(self, factor: float, *, clamp=True) -> float:\n"
        "    if factor < 0:\n        raise ValueError('negative')\n    return factor"
    )
    record["class_name"] = "Shape"
    garbled = Translation(
        "Scale the shape (by a factor.\n\nArgs:\n    factor: How much to scale it.\n"
        "    factor: Again.\n    size: Invented.\n\nReturns:\n",
        -1.0,
    )
    text = structured(record, garbled, "google").text
    assert text == (
        "Scale the shape (by a factor.\n\nArgs:\n    factor (float): How much to scale it.\n"
        "    clamp (optional): Defaults to True.\n\nReturns:\n    float\n\n"
        "Raises:\n    ValueError:"
    )
    broken = method_record("def f(x):\n    return x")
    broken["body"] = "    return (x"
    assert structured(broken, garbled, "google") is garbled
