"""Docstring cleaning and style detection on hand-worked examples."""

import pytest

from codemt.source.docstrings import clean_docstring, detect_style, prose_summary, summary_of


def test_cleaning_replaces_urls_emails_paths_and_hashes():
    raw = """Fetch data.

        See https://example.com/docs?q=1, mail ada@example.org,
        read /etc/app/config.yaml or C:\\\\Users\\\\ada\\\\app.ini,
        fixed in 3f2a9bc1d and/or later.
        """
    assert clean_docstring(raw) == (
        "Fetch data.\n\nSee <URL>, mail <EMAIL>,\nread <PATH> or <PATH>,\nfixed in <HASH> and/or later."
    )


def test_cleaning_normalises_unicode_and_drops_non_ascii():
    assert clean_docstring("ﬁle size in ｍｅｔｅｒｓ — déjà vu") == "file size in meters  dj vu"


def test_cleaning_keeps_plain_words_and_hex_words():
    assert (
        clean_docstring("Return the deadbeef 1234567 value.")
        == "Return the deadbeef 1234567 value."
    )
    assert clean_docstring("   ") == ""


def test_summary_is_first_paragraph_on_one_line():
    assert summary_of("Return the\n  sum.\n\nArgs:\n    a: x") == "Return the sum."


@pytest.mark.parametrize(
    ("docstring", "style"),
    [
        ("Return the sum.", "summary"),
        ("Return the sum\nof two numbers.", "summary"),
        ("Return the sum.\n\nArgs:\n    a: first.\n\nReturns:\n    The sum.", "google"),
        ("Return the sum.\n\nParameters\n----------\na : int\n    First.", "numpy"),
        ("Return the sum.\n\n:param a: first.\n:returns: the sum.", "rest"),
        ("Return the sum.\n\n@param a: first.", "rest"),
        ("Return the sum.\n\nIt adds two numbers together.", "other"),
        ("", ""),
    ],
)
def test_style_detection(docstring, style):
    assert detect_style(docstring) == style


@pytest.mark.parametrize(
    "docstring, summary",
    [
        ("Return x.\n\n:param a: A.", "Return x."),
        (":param required_key: The key.\n:param child: The child.", ""),
        ("Args:\n    a: A.", ""),
        ("Parameters\n----------\na : int", ""),
        ("@param a: A.", ""),
        ("Returns the parameters.", "Returns the parameters."),
    ],
)
def test_a_list_of_fields_is_no_summary(docstring, summary):
    """What project memory offers and `codemt docstring` writes: never `:param ...`."""
    assert prose_summary(docstring) == summary
