"""load_dataset / Dataset: layout, mapping, splits, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from labelflow import ABSTAIN, ClassSchema, DataError, load_dataset, read_wrench

CLASSES = ["HAM", "SPAM"]


def test_layout_and_mapping(write_csv):
    path = write_csv("posts.csv", "pid,msg,y,who\n7,win cash,SPAM,bot\n8,hi mom,HAM,ann\n9,hello,,cat\n")
    ds = load_dataset(path, classes=CLASSES, text="msg", id="pid", label="y")
    assert ds.frame.columns == ["id", "text", "split", "label", "who"]
    assert ds.frame.rows() == [("7", "win cash", "train", 1, "bot"), ("8", "hi mom", "train", 0, "ann"),
                               ("9", "hello", "train", None, "cat")]
    assert ds.metadata_columns == ["who"]
    assert ds.gold().tolist() == [1, 0, ABSTAIN]
    assert ds.gold().dtype == np.int64


def test_split_mapping_and_generated_ids(write_csv):
    a = write_csv("a.csv", "text,label\nx,0\ny,1\n")
    b = write_csv("b.jsonl", '{"text": "z", "label": 1}\n')
    ds = load_dataset({"train": a, "valid": b}, classes=CLASSES, label="label")
    assert ds.frame.select("id", "split", "source").rows() == [
        ("a:0", "train", "a.csv"), ("a:1", "train", "a.csv"), ("b:0", "dev", "b.jsonl")]
    assert ds.splits() == ["train", "dev"]
    assert ds.split("dev").ids.to_list() == ["b:0"]


def test_split_column_aliases_and_default():
    frame = pl.DataFrame({"text": ["a", "b", "c"], "part": ["validation", None, "test"]})
    ds = load_dataset(frame, classes=CLASSES, split="part")
    assert ds.frame["split"].to_list() == ["dev", "train", "test"]


def test_several_text_fields_and_null_text():
    frame = pl.DataFrame({"body": ["hello", None], "title": ["T1", "T2"]})
    ds = load_dataset(frame, classes=CLASSES, text={"text": "body", "title": "title"})
    assert ds.text_fields == ("text", "title")
    assert ds.frame.select("text", "title").rows() == [("hello", "T1"), ("", "T2")]


def test_dev_sample_is_seeded_and_hide_labels(tiny_frame):
    ds = load_dataset(tiny_frame.with_columns(label=pl.Series([1, 0, 1, 0])), classes=CLASSES, id="id", label="label")
    a = ds.with_dev_sample(2, seed=3)
    b = ds.with_dev_sample(2, seed=3)
    assert a.frame["split"].to_list() == b.frame["split"].to_list()
    assert a.frame["split"].to_list().count("dev") == 2
    hidden = a.hide_labels(["train"])
    dev = hidden.frame["split"] == "dev"
    assert hidden.frame.filter(~dev)["label"].null_count() == 2
    assert hidden.frame.filter(dev)["label"].null_count() == 0
    with pytest.raises(DataError, match=r"0\.\.4"):
        ds.with_dev_sample(5)


def test_drop_identical_keeps_first_copy(write_csv):
    path = write_csv("d.csv", "id,text\n1,a\n1,a\n2,b\n")
    ds = load_dataset(path, classes=CLASSES, id="id", duplicates="drop_identical")
    assert ds.ids.to_list() == ["1", "2"]


def test_youtube_files(youtube):
    assert len(youtube) == 1953
    assert youtube.metadata_columns == ["AUTHOR", "DATE", "source"]
    assert youtube.frame["label"].null_count() == 0
    assert youtube.frame["id"].is_unique().all()


def test_read_wrench(tmp_path):
    import json

    (tmp_path / "label.json").write_text(json.dumps({"0": "ham", "1": "spam"}))
    (tmp_path / "train.json").write_text(json.dumps({
        "0": {"label": 1, "weak_labels": [1, -1], "data": {"text": "buy"}},
        "1": {"label": 0, "weak_labels": [-1, 0], "data": {"text": "hi"}}}))
    (tmp_path / "valid.json").write_text(json.dumps({"5": {"label": 0, "weak_labels": [0, 0], "data": {"text": "yo"}}}))
    ds, matrix = read_wrench(tmp_path)
    assert ds.schema == ClassSchema(("ham", "spam"))
    assert ds.frame.select("id", "text", "split", "label").rows() == [
        ("train:0", "buy", "train", 1), ("train:1", "hi", "train", 0), ("valid:5", "yo", "dev", 0)]
    assert matrix.lf_names == ("lf_0", "lf_1")
    np.testing.assert_array_equal(matrix.values, np.array([[1, -1], [-1, 0], [0, 0]], dtype=np.int8))


# --- bad input: the exception type and a message naming the thing ---------------------------------


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="data file not found") as err:
        load_dataset(missing, classes=CLASSES)
    assert str(missing) in str(err.value)


def test_unsupported_file_type(write_csv):
    path = write_csv("data.xlsx", "x")
    with pytest.raises(DataError, match=r"unsupported file type '\.xlsx'"):
        load_dataset(path, classes=CLASSES)


def test_missing_column_is_named(write_csv):
    path = write_csv("a.csv", "body,label\nx,0\n")
    with pytest.raises(DataError, match=r"has no column 'msg'") as err:
        load_dataset(path, classes=CLASSES, text="msg", label="label")
    assert "['body', 'label']" in str(err.value)  # and lists the columns it has


@pytest.mark.parametrize(("content", "message"), [("text,label\n", "has no rows"), ("", "could not be read as csv")],
                         ids=["header-only", "zero-bytes"])
def test_empty_data(write_csv, content, message):
    path = write_csv("empty.csv", content)
    with pytest.raises(DataError, match=message) as err:
        load_dataset(path, classes=CLASSES)
    assert str(path) in str(err.value)


def test_empty_frame():
    with pytest.raises(DataError, match="the polars frame has no rows"):
        load_dataset(pl.DataFrame({"text": []}, schema={"text": pl.String}), classes=CLASSES)


def test_no_sources():
    with pytest.raises(DataError, match="no data sources"):
        load_dataset([], classes=CLASSES)


def test_duplicate_ids_are_named(write_csv):
    path = write_csv("d.csv", "id,text\nu1,a\nu2,b\nu1,c\n")
    with pytest.raises(DataError, match=r"duplicate ids: \['u1'\]"):
        load_dataset(path, classes=CLASSES, id="id")


def test_duplicate_ids_across_files(write_csv):
    a = write_csv("a.csv", "id,text\nx,1\n")
    b = write_csv("b.csv", "id,text\nx,2\n")
    with pytest.raises(DataError, match=r"duplicate ids: \['x'\]"):
        load_dataset([a, b], classes=CLASSES, id="id", duplicates="drop_identical")


@pytest.mark.parametrize(
    ("labels", "bad", "row", "row_id"),
    [("0\n1\n2", "2", 2, "r2"), ("HAM\nSPAM\nEGGS", "'EGGS'", 2, "r2"), ("0\n-1\n1", "-1", 1, "r1"),
     ("0.0\n1.5\n1.0", "1.5", 1, "r1")],
    ids=["index", "name", "negative", "fractional"],
)
def test_gold_labels_outside_schema_name_row_and_value(write_csv, labels, bad, row, row_id):
    body = "\n".join(f"r{i},t{i},{v}" for i, v in enumerate(labels.split("\n")))
    path = write_csv("g.csv", "id,text,label\n" + body + "\n")
    with pytest.raises(DataError, match="not in the schema") as err:
        load_dataset(path, classes=CLASSES, id="id", label="label")
    msg = str(err.value)
    assert f"row {row} (id '{row_id}')" in msg
    assert f"gold label {bad}" in msg


def test_undecodable_bytes_name_the_line(write_csv):
    path = write_csv("bad.csv", b"id,text\n1,fine\n2,also fine\n3,caf\xe9 latin-1\n4,ok\n")
    with pytest.raises(DataError, match="line 4") as err:
        load_dataset(path, classes=CLASSES, id="id")
    assert "bad.csv" in str(err.value)
    assert "UTF-8" in str(err.value)


def test_reserved_column_collision(write_csv):
    path = write_csv("c.csv", "msg,label\nx,0\n")
    with pytest.raises(DataError, match=r"\['label'\] collide"):
        load_dataset(path, classes=CLASSES, text="msg")


def test_null_id_is_named(write_csv):
    path = write_csv("n.csv", "id,text\na,x\n,y\n")
    with pytest.raises(DataError, match="empty value at row 1"):
        load_dataset(path, classes=CLASSES, id="id")


@pytest.mark.parametrize("spec", [["only"], ["a", "a"], "ab", ["a", ""]])
def test_bad_schema(spec):
    with pytest.raises(DataError):
        ClassSchema.from_spec(spec)


def test_unknown_class_name_lists_the_known():
    with pytest.raises(DataError, match=r"unknown class 'EGGS'; the schema's classes are \['HAM', 'SPAM'\]"):
        ClassSchema.from_spec(CLASSES).index("EGGS")


# --- issue 14, item 4: ids and splits survive import --------------------------------------------------


def test_item4_ids_and_texts_are_read_as_strings(write_csv):
    path = write_csv("z.csv", "id,text,label\n00123,007,0\n00456,hi,1\n")
    ds = load_dataset(path, classes=CLASSES, id="id", label="label")
    assert ds.frame.select("id", "text").rows() == [("00123", "007"), ("00456", "hi")]
    jsonl = write_csv("z.jsonl", '{"id": "00123", "text": "007"}\n{"id": 456, "text": "hi"}\n')
    assert load_dataset(jsonl, classes=CLASSES, id="id").ids.to_list() == ["00123", "456"]


@pytest.mark.parametrize(("lines", "column", "row"), [
    ('{"id": "a", "text": {"x": 1}}\n{"id": "b", "text": {"x": 2}}\n', "text", 0),
    ('{"id": "a", "text": "fine"}\n\n{"id": "b", "text": [1, 2]}\n', "text", 1),
    ('{"id": "a", "text": "fine"}\n{"id": {"k": 1}, "text": "x"}\n', "id", 1),
], ids=["objects", "list-among-strings", "object-id"])
def test_item4_a_jsonl_object_in_a_text_or_id_field_is_refused(write_csv, lines, column, row):
    path = write_csv("o.jsonl", lines)
    with pytest.raises(DataError, match=rf"o\.jsonl: row {row} has (an object|a list) in column '{column}'"):
        load_dataset(path, classes=CLASSES, id="id")


def test_item4_a_jsonl_text_that_only_looks_like_json_is_kept(write_csv):
    path = write_csv("s.jsonl", '{"id": "a", "text": "{not json"}\n{"id": "b", "text": "[1, 2]"}\n')
    assert load_dataset(path, classes=CLASSES, id="id").frame["text"].to_list() == ["{not json", "[1, 2]"]


def test_item4_split_names_are_case_insensitive_aliases(write_csv):
    a = write_csv("a.csv", "text\nx\n")
    b = write_csv("b.csv", "text\ny\n")
    ds = load_dataset({"TRAIN": a, "VALID": b}, classes=CLASSES)
    assert ds.splits() == ["train", "dev"]
    frame = pl.DataFrame({"text": list("abcdef"), "part": ["Train", "VALID", "Validation", "Dev", "TEST", "Holdout"]})
    ds = load_dataset(frame, classes=CLASSES, split="part")
    assert ds.frame["split"].to_list() == ["train", "dev", "dev", "dev", "test", "Holdout"]
    hidden = load_dataset(frame.with_columns(label=pl.lit(0)), classes=CLASSES, split="part", label="label")
    assert hidden.hide_labels(["TRAIN", "valid"]).frame["label"].to_list() == [None, None, None, None, 0, 0]


# --- issue 14, item 13: the UTF-8 check streams -------------------------------------------------------

MEASURE_UTF8 = """
import sys, tracemalloc
from pathlib import Path
from labelflow import tables
tracemalloc.start()
tables._check_utf8(Path(sys.argv[1]))
print(tracemalloc.get_traced_memory()[1], tables.UTF8_CHUNK)
"""


def test_item13_the_utf8_check_streams_in_bounded_memory(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "big.csv"
    block = "".join(f"{i},caf\u00e9 \u4e2d\u6587 \U0001F600 comment number {i} " + "x" * 40 + "\n" for i in range(1000))
    with path.open("w", encoding="utf-8") as fh:
        fh.write("id,text\n")
        for _ in range(370):  # about 30 MB
            fh.write(block)
    assert path.stat().st_size > 25_000_000
    done = subprocess.run([sys.executable, "-c", MEASURE_UTF8, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    peak, chunk = map(int, done.stdout.split())
    assert peak < 3 * chunk, (peak, chunk)


def test_item13_an_invalid_byte_past_the_first_chunk_names_its_line_and_offset(tmp_path, monkeypatch):
    from labelflow import tables

    monkeypatch.setattr(tables, "UTF8_CHUNK", 64)
    path = tmp_path / "late.csv"
    good = "".join(f"{i},\u00e9t\u00e9 \u4e2d\n" for i in range(40)).encode()
    path.write_bytes(b"id,text\n" + good + b"99,bad \xff here\n")
    offset = len(b"id,text\n" + good + b"99,bad ")
    with pytest.raises(DataError, match=rf"late\.csv: line 42 \(byte {offset}\) is not valid UTF-8"):
        tables._check_utf8(path)
    # a multi-byte character cut at the end of the file
    path.write_bytes(b"id,text\n" + good + b"1,\xe4\xb8")
    offset = len(b"id,text\n" + good + b"1,")
    with pytest.raises(DataError, match=rf"line 42 \(byte {offset}\)"):
        tables._check_utf8(path)
    # a multi-byte character split across chunk boundaries is fine
    for cut in range(60, 70):
        path.write_bytes(b"x" * cut + "\u4e2d\U0001F600\n".encode() * 20)
        tables._check_utf8(path)
