"""Reading files: PEP 263 decoding, the paper's repairs, and every bad-input kind counted."""

import pytest

from codemt.source import reading
from codemt.source.reading import SkipFile, decode_source, parse_with_repairs


def test_coding_cookie_is_honoured():
    data = "# -*- coding: latin-1 -*-\ndef f():\n    return 'café'\n".encode("latin-1")
    assert "café" in decode_source(data)


def test_bom_and_crlf_are_normalised():
    data = "\ufeffdef f():\r\n    return 1\r\n".encode("utf-8")
    assert decode_source(data) == "def f():\n    return 1\n"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x01\x02binary", reading.BINARY),
        (b"# -*- coding: no-such-codec -*-\nx = 1\n", reading.BAD_ENCODING),
        (b"x = '\xff\xfe'\n", reading.BAD_ENCODING),
        (b"x = 1\n" * 10, reading.TOO_LARGE),
    ],
)
def test_bad_bytes_are_skipped_with_a_reason(data, reason):
    with pytest.raises(SkipFile) as caught:
        decode_source(data, max_bytes=50)
    assert caught.value.reason == reason


def test_python2_file_is_converted():
    source = (
        "def greet(name):\n"
        "    print 'hello', name\n"
        "    try:\n"
        "        do()\n"
        "    except ValueError, e:\n"
        "        raise KeyError, str(e)\n"
        "    return 0777\n"
    )
    tree, text, repair = parse_with_repairs(source)
    assert repair == reading.REPAIRED_PY2
    assert "print('hello', name)" in text and "except ValueError as e:" in text and "0o777" in text
    assert tree.body[0].name == "greet"


def test_mixed_tabs_and_spaces_are_fixed_by_whitespace_repair():
    source = "def f(x):\n    if x:\n\treturn 1\n    return 2\n"
    tree, _, repair = parse_with_repairs(source)
    assert repair == reading.REPAIRED_WHITESPACE
    assert len(tree.body[0].body) == 2


def test_unrepairable_file_reports_line_and_message():
    with pytest.raises(SkipFile) as caught:
        parse_with_repairs("def f(:\n    pass\n")
    assert caught.value.reason == reading.SYNTAX_ERROR
    assert "line 1" in str(caught.value)


def test_repairs_can_be_switched_off():
    with pytest.raises(SkipFile):
        parse_with_repairs("print 'hi'\n", repair=False)


def test_deep_nesting_is_counted_not_crashing():
    source = "x = " + "(" * 5000 + "1" + ")" * 5000 + "\n"
    with pytest.raises(SkipFile) as caught:
        parse_with_repairs(source)
    assert caught.value.reason in (reading.TOO_DEEP, reading.SYNTAX_ERROR, reading.OUT_OF_MEMORY)


def test_token_count_stops_at_the_limit():
    assert not reading.has_more_tokens("x = f(a)\n", 7)  # x = f ( a ) and the line end
    assert reading.has_more_tokens("x = f(a)\n", 6)
    assert not reading.has_more_tokens("'" + "a" * 10_000 + "'", 3)  # size alone is no cost


def test_a_text_over_the_token_limit_is_refused_unparsed(monkeypatch):
    def parse(text):
        raise AssertionError("parsed a text over the token limit")

    monkeypatch.setattr(reading, "_parse", parse)
    with pytest.raises(SkipFile) as caught:
        parse_with_repairs("x = [" + "1, " * 5000 + "\n", max_tokens=1000)
    assert caught.value.reason == reading.TOO_MANY_TOKENS
    assert "1000 tokens" in str(caught.value)


def test_a_large_text_that_does_not_parse_is_not_converted_from_python2(monkeypatch):
    def convert(text):
        raise AssertionError("tried the Python 2 conversion on a large text")

    monkeypatch.setattr(reading, "convert_py2", convert)
    source = "def f(x):\n    return x\n" * 200 + "print 'no'\n"
    with pytest.raises(SkipFile) as caught:
        parse_with_repairs(source, max_repair_tokens=1000)
    assert caught.value.reason == reading.TOO_LARGE_TO_REPAIR
    assert "line 401" in str(caught.value)


def test_rare_collections_nest_and_overlap_in_threads_and_give_the_setting_back():
    import gc
    import threading

    from codemt.source.reading import RARE_GC_THRESHOLD, rare_collections

    before = gc.get_threshold()
    with rare_collections():
        with rare_collections():
            assert gc.get_threshold()[0] == RARE_GC_THRESHOLD
        assert gc.get_threshold()[0] == RARE_GC_THRESHOLD  # the outer block still runs
    assert gc.get_threshold() == before
    # Two threads whose blocks overlap, the first to start ending first: the second still
    # runs rarely, and when it ends the setting before both comes back.
    first_in, first_out, second_in = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def first():
        with rare_collections():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with rare_collections():
            second_in.set()
            first_out.wait(10)
            seen.append(gc.get_threshold()[0])

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert seen == [RARE_GC_THRESHOLD] and gc.get_threshold() == before
    with pytest.raises(RuntimeError), rare_collections():
        raise RuntimeError("a failing block")
    assert gc.get_threshold() == before
    # A caller who turned collection off, or made it rarer still, keeps that.
    try:
        for own in ((0, 10, 10), (RARE_GC_THRESHOLD * 5, 10, 10)):
            gc.set_threshold(*own)
            with rare_collections():
                assert gc.get_threshold() == own
            assert gc.get_threshold() == own
    finally:
        gc.set_threshold(*before)
