"""The book's table of the contribution checks covers every check ``python -m lab add`` runs, in its order."""

from lab.book import contrib as book_contrib
from lab.contrib.checks import CHECKS


def test_every_check_is_explained_in_the_book():
    frame = book_contrib.checks_frame()
    assert list(frame.iloc[:, 0]) == list(CHECKS)
    assert all(text for text in frame.iloc[:, 1])


def test_a_check_without_words_is_an_error(monkeypatch):
    monkeypatch.setitem(CHECKS, "new-check", "something new")
    try:
        book_contrib.checks_frame()
    except KeyError as exc:
        assert "new-check" in str(exc)
    else:
        raise AssertionError("a check the book does not explain went unnoticed")


def test_the_resources_table_says_which_host_lacks_what(tmp_path):
    import synthetic

    from lab.bench import BENCHES

    synthetic.make_host(tmp_path, synthetic.FORWARD_ID)
    synthetic.make_host(tmp_path, synthetic.OTHER_ID, resources=("exits", "native", "tour", "io"))
    frame = book_contrib.resources_frame(tmp_path).set_index("ホスト")
    assert set(frame.columns) == set(BENCHES)
    assert (frame.loc[synthetic.FORWARD_ID] == book_contrib.HAS).all()
    assert {r for r in BENCHES if frame.loc[synthetic.OTHER_ID, r] == book_contrib.LACKS} == {
        "qemu-io", "reference", "cells", "notify"}
