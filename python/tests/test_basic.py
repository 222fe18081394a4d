"""Round trips through the Python package: vectors from numpy, filters, the writer as a
context manager, errors as exception classes, text search with the default model."""

import numpy as np
import pytest

import xqdb


def test_vectors_round_trip_filters_and_rollback(tmp_path):
    index = xqdb.Index.create(str(tmp_path / "idx"), dim=4, metric="dot")
    vectors = np.eye(4, dtype=np.float32)
    with index.writer() as w:
        w.insert_vectors(["a", "b", "c", "d"], vectors, texts=["one", "two", "three", "four"])
    assert len(index) == 4
    hits = index.search(np.array([0, 1, 0, 0], dtype=np.float32), k=2)
    assert [h.id for h in hits] == ["b", "a"]  # ties go to the passage stored first
    assert hits[0].score == pytest.approx(1.0)
    assert hits[0].text == "two"
    batch = index.search_batch(vectors, k=1)
    assert [b[0].id for b in batch] == ["a", "b", "c", "d"]
    with pytest.raises(RuntimeError):
        with index.writer() as w:
            w.insert_vectors(["e"], np.ones((1, 4), dtype=np.float32))
            raise RuntimeError("rolled back")
    assert len(index) == 4
    index.writer().close()  # each block released the writer
    assert index.verify()["passages"] == 4


def test_metadata_and_language_filters(tmp_path):
    index = xqdb.Index.create(str(tmp_path / "idx"), dim=2, metric="dot", lexical=True)
    w = index.writer()
    w.insert_vectors(["x"], np.array([[1, 0]], dtype=np.float32), texts=["Error E1234"])
    w.commit()
    w.close()
    hits = index.search_text("e1234", mode="lexical")
    assert [h.id for h in hits] == ["x"]
    assert "<mark>E1234</mark>" in hits[0].snippet


def test_errors_are_exception_classes(tmp_path):
    index = xqdb.Index.create(str(tmp_path / "idx"), dim=2)
    with index.writer() as w:
        w.insert_vectors(["a"], np.ones((1, 2), dtype=np.float32))
        with pytest.raises(xqdb.DuplicateIdError):
            w.insert_vectors(["a"], np.ones((1, 2), dtype=np.float32))
        with pytest.raises(xqdb.InvalidInputError):
            w.insert_vectors(["b"], np.ones((1, 3), dtype=np.float32))
        with pytest.raises(xqdb.InvalidInputError):
            w.insert_vectors(["c"], np.full((1, 2), np.nan, dtype=np.float32))
    with pytest.raises(xqdb.BusyError):
        a = index.writer()
        index.writer()
    a.close()
    with pytest.raises(xqdb.NotAnIndexError):
        xqdb.Index.open(str(tmp_path / "nothing"))
    assert issubclass(xqdb.DuplicateIdError, xqdb.InvalidInputError)
    assert issubclass(xqdb.CorruptError, xqdb.XqdbError)


def test_text_round_trip_with_the_default_model(tmp_path):
    index = xqdb.Index.create(str(tmp_path / "idx"))
    with index.writer() as w:
        w.insert_texts(
            [
                {"id": "helsinki", "text": "Helsinki is the capital of Finland.", "lang": "en",
                 "meta": {"src": "wiki"}},
                {"id": "tokyo", "text": "Tokyo is the capital of Japan.", "lang": "en"},
            ]
        )
    hits = index.search_text("Mikä on Suomen pääkaupunki?", k=2)
    assert hits[0].id == "helsinki"
    assert hits[0].meta == {"src": "wiki"}
    only = index.search_text("Mikä on Suomen pääkaupunki?", k=2, meta={"src": "wiki"})
    assert [h.id for h in only] == ["helsinki"]
