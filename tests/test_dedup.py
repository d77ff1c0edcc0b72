"""De-duplication: exact copies, renamed-variable clones and edited copies are found."""

import ast

from codemt.mine.dedup import (
    Deduplicator,
    DedupSettings,
    band_keys,
    code_tokens,
    exact_key,
    local_names,
)
from codemt.mine.extract import extract_methods

ORIGINAL = '''
def moving_average(values, window):
    """Average of each window."""
    result = []
    total = 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        if index >= window - 1:
            result.append(total / window)
    return result
'''

RENAMED = """
def moving_average(xs, n):
    acc = []
    running = 0.0
    for i, x in enumerate(xs):
        running += x
        if i >= n:
            running -= xs[i - n]
        if i >= n - 1:
            acc.append(running / n)
    return acc
"""

EDITED = RENAMED.replace("running = 0.0", "running = 0")  # Jaccard about 0.9 to the original

DIFFERENT = """
def parse_header(line, sep):
    key, _, value = line.partition(sep)
    key = key.strip().lower()
    if not key:
        raise ValueError("empty header name: " + line)
    return key, value.strip()
"""


def keys(source):
    ((node, record),) = extract_methods(ast.parse(source), repo="r", path="p.py")
    tokens = code_tokens(record["signature"], record["body"], local_names(node, record["body"]))
    return exact_key(record["signature"], record["body"]), band_keys(tokens, DedupSettings())


def test_renamed_variable_clone_has_identical_band_keys():
    assert keys(ORIGINAL)[1] == keys(RENAMED)[1]
    assert keys(ORIGINAL)[0] != keys(RENAMED)[0]


def test_deduplicator_keeps_first_and_names_the_kind():
    dedup = Deduplicator(DedupSettings())
    assert dedup.offer(*keys(ORIGINAL)) is None
    assert dedup.offer(*keys(ORIGINAL)) == "exact_duplicate"
    assert dedup.offer(*keys(RENAMED)) == "near_duplicate"
    assert dedup.offer(*keys(EDITED)) == "near_duplicate"
    assert dedup.offer(*keys(DIFFERENT)) is None


def test_local_names_are_parameters_and_assigned_names():
    ((node, record),) = extract_methods(ast.parse(ORIGINAL), repo="r", path="p.py")
    assert local_names(node, record["body"]) == {
        "values",
        "window",
        "result",
        "total",
        "index",
        "value",
    }


def test_short_methods_get_exact_dedup_only():
    assert keys("def f(a):\n    return a\n")[1] is None


def test_switches():
    dedup = Deduplicator(DedupSettings(near=False))
    assert dedup.offer(*keys(ORIGINAL)) is None
    assert dedup.offer(*keys(RENAMED)) is None
    dedup = Deduplicator(DedupSettings(exact=False, near=False))
    assert dedup.offer(*keys(ORIGINAL)) is None
    assert dedup.offer(*keys(ORIGINAL)) is None


def test_match_asks_what_offer_would_say_and_remember_keeps_anything():
    bands_of = lambda n: list(range(n, n + 9))  # noqa: E731 (9 bands at the default plan)
    dedup = Deduplicator(DedupSettings())
    assert dedup.match(1, bands_of(0)) is None and dedup.offer(1, bands_of(0)) is None
    assert dedup.match(1, bands_of(100)) == "exact_duplicate"  # asking kept nothing new
    assert dedup.match(2, [0, *bands_of(200)[1:]]) == "near_duplicate"
    assert dedup.offer(2, [0, *bands_of(200)[1:]]) == "near_duplicate"
    # A near duplicate's bands are not kept by offer; remember keeps them.
    assert dedup.match(3, [-1, 201, *bands_of(300)[2:]]) is None
    dedup.remember(2, [0, *bands_of(200)[1:]])
    assert dedup.match(3, [-1, 201, *bands_of(300)[2:]]) == "near_duplicate"
