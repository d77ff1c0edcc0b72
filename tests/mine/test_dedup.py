"""De-duplication: exact copies, renamed-variable clones and edited copies are found."""

import ast

import numpy as np

from codemt.mine.dedup import (
    Deduplicator,
    DedupSettings,
    band_keys,
    band_keys_batch,
    code_tokens,
    exact_key,
    fold_bands,
    local_names,
)
from codemt.source.extract import extract_methods

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


def test_methods_agreeing_in_one_band_only_are_candidates_in_that_band_alone():
    bands, rows = 4, 3
    rng = np.random.default_rng(0)
    first = rng.integers(0, 2**32, size=bands * rows, dtype=np.uint64)
    second = rng.integers(0, 2**32, size=bands * rows, dtype=np.uint64)
    # Band b holds permutations b * rows ... b * rows + rows - 1.
    band_two = [2 * rows + r for r in range(rows)]
    second[band_two] = first[band_two]
    a, b = fold_bands(np.stack([first, second]), bands, rows)
    assert [x == y for x, y in zip(a, b, strict=True)] == [False, False, True, False]
    # One row of the band differing is enough to part them.
    second[band_two[1]] ^= 1
    a, b = fold_bands(np.stack([first, second]), bands, rows)
    assert not set(a) & set(b)


def test_the_same_rows_in_different_bands_never_make_the_same_key():
    bands, rows = 4, 3
    band_rows = np.arange(1, rows + 1, dtype=np.uint64) * 977
    every_band_alike = np.tile(band_rows, bands)  # each band's rows: 977, 1954, 2931
    [keys] = fold_bands(every_band_alike[None, :], bands, rows)
    assert len(set(keys)) == bands
    # A method whose band 0 holds what another's band 1 holds shares no key with it.
    rng = np.random.default_rng(1)
    first = rng.integers(0, 2**32, size=bands * rows, dtype=np.uint64)
    second = rng.integers(0, 2**32, size=bands * rows, dtype=np.uint64)
    second[rows : 2 * rows] = first[:rows]
    a, b = fold_bands(np.stack([first, second]), bands, rows)
    assert not set(a) & set(b)
    assert all(0 <= k < 2**63 for k in a + b)  # fits Parquet's int64 column


def test_band_keys_batch_matches_one_method_at_a_time_and_skips_short_ones():
    methods = [ORIGINAL, RENAMED, EDITED, DIFFERENT]
    token_lists = []
    for source in methods:
        ((node, record),) = extract_methods(ast.parse(source), repo="r", path="p.py")
        body = record["body"]
        token_lists.append(code_tokens(record["signature"], body, local_names(node, body)))
    settings = DedupSettings()
    short = token_lists[0][: settings.min_tokens - 1]
    batch = band_keys_batch([*token_lists, short], settings)
    assert batch[:4] == [band_keys(t, settings) for t in token_lists]
    assert batch[4] is None
    assert batch[0] == batch[1]  # a renamed-variable clone
    assert set(batch[0]) & set(batch[2])  # an edited copy shares a band
    assert not set(batch[0]) & set(batch[3])
