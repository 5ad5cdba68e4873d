"""One record validator: the store, the server's documents and the records ingester
accept and refuse the same records (each in its own words)."""

from __future__ import annotations

import math

import pytest

from lodevec import errors
from lodevec.ingest.indexer import RECORDS_VOICE
from lodevec.serve.errors import ValidationFailed
from lodevec.serve.schemas import DOCUMENT_VOICE
from lodevec.store.validation import STORE, validate_record

GOOD = [{"id": "a", "text": "x"}, {"id": 7, "text": "x", "metadata": {"k": [1, "two"]}},
        {"id": "b", "text": "x", "source": "notes.md", "chunk": 3}]
BAD = [
    ("not a dict", "id"),
    ({"text": "x"}, "id"),
    ({"id": "   ", "text": "x"}, "id"),
    ({"id": True, "text": "x"}, "id"),
    ({"id": "a"}, "text"),
    ({"id": "a", "text": " \n"}, "text"),
    ({"id": "a", "text": "x", "chunk": -1}, "chunk"),
    ({"id": "a", "text": "x", "source": 5}, "source"),
    ({"id": "a", "text": "x", "metadata": [1]}, "metadata"),
    ({"id": "a", "text": "x", "metadata": {"v": math.nan}}, "metadata"),
]
VOICES = [(STORE, errors.RecordError), (RECORDS_VOICE, errors.RecordError),
          (DOCUMENT_VOICE, ValidationFailed)]


@pytest.mark.parametrize("voice,exc", VOICES, ids=["store", "records", "documents"])
def test_every_door_applies_the_same_rules(voice, exc):
    for rec in GOOD:
        got = validate_record(rec, label="r", voice=voice)
        assert got["id"] == str(rec["id"]) and got["text"] == "x"
    for rec, field in BAD:
        with pytest.raises(exc) as e:
            validate_record(rec, label="r", voice=voice)
        assert isinstance(e.value, errors.InputError)
        if field != "id" or isinstance(rec, dict):
            assert field in str(e.value), (rec, str(e.value))


def test_each_door_keeps_its_words():
    with pytest.raises(ValidationFailed, match=r"^documents\[0\]\.text must be a non-empty string$"):
        validate_record({"id": "a"}, label="documents[0]", voice=DOCUMENT_VOICE)
    with pytest.raises(errors.RecordError, match=r'^f: record 2 \(id b\): "text" is missing or empty$'):
        validate_record({"id": "b"}, label="f: record 2", voice=RECORDS_VOICE)
    with pytest.raises(errors.RecordError, match=r"^record 3 \(id 'c'\): 'text' is missing or empty$"):
        validate_record({"id": "c"}, 3)
