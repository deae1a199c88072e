"""Store files changed behind labelflow's back are refused, naming the file (issue 14, items 3 and 11)."""

import numpy as np
import polars as pl
import pytest

from labelflow.annotations import AnnotationStore
from labelflow.errors import LabelModelError, ProjectError
from labelflow.labelmodels import get_label_model, load_label_model
from labelflow.matrix import LabelMatrix


@pytest.fixture
def saved_matrix(tmp_path):
    L = np.array([[0, -1], [1, 1], [-1, 0], [1, -1]], dtype=np.int8)
    path = tmp_path / "matrix.parquet"
    LabelMatrix(L, ("a", "b"), pl.Series("id", ["w", "x", "y", "z"]), 2).save(path)
    return path


def test_item3_votes_moved_to_other_rows_are_refused(saved_matrix):
    frame, meta = pl.read_parquet(saved_matrix), pl.read_parquet_metadata(saved_matrix)
    frame.with_columns(pl.col("a").shift(1, fill_value=-1)).write_parquet(saved_matrix, metadata=meta)
    with pytest.raises(LabelModelError, match=r"matrix\.parquet: its votes were changed after `labelflow apply`"):
        LabelMatrix.load(saved_matrix)


def test_item3_rows_reordered_with_their_votes_still_load(saved_matrix):
    frame, meta = pl.read_parquet(saved_matrix), pl.read_parquet_metadata(saved_matrix)
    frame.reverse().write_parquet(saved_matrix, metadata=meta)
    loaded = LabelMatrix.load(saved_matrix)
    assert loaded.ids.to_list() == ["z", "y", "x", "w"] and loaded.values[0].tolist() == [1, -1]


def test_item11_an_annotation_store_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "annotations.sqlite").mkdir()
    with pytest.raises(ProjectError, match=r"annotations\.sqlite is not a file"):
        AnnotationStore(tmp_path / "annotations.sqlite", ["HAM", "SPAM"]).frame()


def test_item11_a_saved_model_with_nan_parameters_is_refused(tmp_path):
    L = np.array([[0, 0, -1], [1, 1, 1], [1, -1, 0]], dtype=np.int8)
    get_label_model("labelflow", 2).fit(L).save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["accuracy"] = np.full_like(arrays["accuracy"], np.nan)
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(LabelModelError, match=r"m\.npz: its array 'accuracy' holds NaN"):
        load_label_model(tmp_path / "m.npz")


def test_item11_a_folder_where_the_matrix_or_a_model_belongs_is_named(project):
    project.store.models.mkdir(exist_ok=True)
    project.store.model_file("labelflow").mkdir()
    with pytest.raises(ProjectError, match=r"labelflow\.npz is not a file"):
        project.label_model("labelflow")
    project.store.matrix.unlink(missing_ok=True)
    project.store.matrix.mkdir()
    with pytest.raises(ProjectError, match=r"matrix\.parquet is not a file"):
        project.matrix()
