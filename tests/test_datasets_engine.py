"""The dataset engine: every rejected file names what is wrong; good files summarise right."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from projects.engine.datasets import (
    DatasetError,
    Limits,
    format_for_filename,
    inspect,
    load_arrays,
    write_builtin_npz,
)

IRIS = (
    "sepal_length,sepal_width,petal_width,species\n"
    "5.1,3.5,0.2,setosa\n"
    "4.9,3.0,0.2,setosa\n"
    "7.0,3.2,1.4,versicolor\n"
    "6.4,3.2,1.5,versicolor\n"
    "6.3,3.3,2.5,virginica\n"
)


def write_csv(tmp_path, text, name="iris.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def csv_error(tmp_path, text, **kwargs) -> DatasetError:
    path = write_csv(tmp_path, text)
    with pytest.raises(DatasetError) as caught:
        inspect(path, "csv", "iris.csv", **kwargs)
    return caught.value


# CSV


def test_csv_summary(tmp_path):
    summary = inspect(write_csv(tmp_path, IRIS), "csv", "iris.csv")

    assert summary.format == "csv"
    assert summary.num_rows == 5
    assert summary.num_features == 3
    assert summary.input_shape == [3]
    assert summary.target_column == "species"
    assert summary.feature_names == ["sepal_length", "sepal_width", "petal_width"]
    assert summary.num_classes == 3
    assert summary.class_names == ["setosa", "versicolor", "virginica"]
    assert summary.class_counts == {"setosa": 2, "versicolor": 2, "virginica": 1}
    assert summary.preview[0] == [5.1, 3.5, 0.2, "setosa"]
    assert len(summary.preview) == 5


def test_csv_named_target_column(tmp_path):
    text = "label,a,b\nyes,1,2\nno,3,4\nyes,5,6\n"
    summary = inspect(write_csv(tmp_path, text), "csv", "iris.csv", target_column="label")

    assert summary.feature_names == ["a", "b"]
    assert summary.class_counts == {"no": 1, "yes": 2}
    x, y, class_names = load_arrays(tmp_path / "iris.csv", "csv", target_column="label")
    assert x.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert y.tolist() == [1, 0, 1]
    assert class_names == ["no", "yes"]


def test_csv_numeric_labels_sort_as_numbers(tmp_path):
    text = "a,grade\n1,10\n2,2\n3,9\n"
    summary = inspect(write_csv(tmp_path, text), "csv", "iris.csv")

    assert summary.class_names == ["2", "9", "10"]


def test_csv_regression(tmp_path):
    text = "rooms,area,price\n3,70,210.5\n4,95,300\n2,40,150.25\n"
    summary = inspect(write_csv(tmp_path, text), "csv", "homes.csv", task="regression")

    assert summary.num_classes is None
    assert summary.class_counts == {}
    assert summary.preview[2] == [2.0, 40.0, 150.25]
    x, y, class_names = load_arrays(tmp_path / "iris.csv", "csv", task="regression")
    assert y.dtype == np.float32
    assert y.tolist() == [210.5, 300.0, 150.25]
    assert class_names == []


def test_csv_load_matches_inspect(tmp_path):
    path = write_csv(tmp_path, IRIS)
    summary = inspect(path, "csv", "iris.csv")
    x, y, class_names = load_arrays(path, "csv")

    assert x.dtype == np.float32
    assert x.shape == (summary.num_rows, summary.num_features)
    assert class_names == summary.class_names
    assert y.tolist() == [0, 0, 1, 1, 2]


def test_csv_skips_blank_lines_and_bom(tmp_path):
    path = tmp_path / "iris.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b\n\n1,x\n2,y\n\n")
    summary = inspect(path, "csv", "iris.csv")

    assert summary.feature_names == ["a"]
    assert summary.num_rows == 2


@pytest.mark.parametrize(("text", "kwargs", "message", "field", "code"), [
    ("", {}, "iris.csv: the file is empty", "file", "empty"),
    ("\n\n", {}, "iris.csv: the file is empty", "file", "empty"),
    ("a,b,species\n", {}, "iris.csv: the file has a header row but no data rows", "file", "no_rows"),
    ("species\nsetosa\n", {},
     "iris.csv, line 1: found 1 column; a CSV dataset needs at least one feature column and a target column, "
     "separated by commas", "file", "too_few_columns"),
    ("a,a,species\n1,2,x\n", {}, "iris.csv, line 1: duplicate column name 'a'", "file", "duplicate_column"),
    ("a,,species\n1,2,x\n", {}, "iris.csv, line 1: column 2 has no name", "file", "empty_column_name"),
    ("a,b,species\n1,2,x\n", {"target_column": "label"},
     "iris.csv: target column 'label' not found; the columns are: a, b, species", "target_column", "unknown_column"),
    ("a,b,species\n1,2,x\n3,4\n", {}, "iris.csv, line 3: expected 3 fields, got 2", "file", "ragged_row"),
    ("a,b,species\n1,2,x\n3,4,y,5\n", {}, "iris.csv, line 3: expected 3 fields, got 4", "file", "ragged_row"),
    ("a,b,species\n1,2,x\n3,,y\n", {}, "iris.csv, line 3, column 'b': missing value", "file", "missing_value"),
    ("a,b,species\n1,2,x\n3,NA,y\n", {}, "iris.csv, line 3, column 'b': missing value", "file", "missing_value"),
    ("a,b,species\n1,2,x\n3,4,\n", {}, "iris.csv, line 3, column 'species': missing value", "file",
     "missing_value"),
    ("a,b,species\n1,2,x\n3,inf,y\n", {}, "iris.csv, line 3, column 'b': 'inf' is not a finite number", "file",
     "not_finite"),
    ("a,b,species\n1,2,x\n3,4,y\n5,6,x\n", {"task": "regression"},
     "iris.csv, line 2, column 'species': 'x' is not a number, and a regression target must be numeric", "file",
     "not_a_number"),
    ("a,b,species\n1,2,setosa\n3,4,setosa\n", {},
     "iris.csv, column 'species': classification needs at least 2 classes, found 1 (setosa)", "file",
     "too_few_classes"),
    ("a,b,species\n1,2,x\n3,4,y\n", {"task": "clustering"},
     "unsupported task 'clustering'; expected classification or regression", "task", "invalid_choice"),
])
def test_csv_rejected(tmp_path, text, kwargs, message, field, code):
    error = csv_error(tmp_path, text, **kwargs)

    assert str(error) == message
    assert error.field == field
    assert error.code == code


def test_csv_non_number_names_line_and_column(tmp_path):
    rows = ["sepal_length,petal_width,species"] + [f"5.{i},0.{i},setosa" for i in range(11)]
    rows.append("6.1,abc,virginica")
    error = csv_error(tmp_path, "\n".join(rows) + "\n")

    assert str(error) == "iris.csv, line 13, column 'petal_width': 'abc' is not a number"
    assert error.params["line"] == 13


def test_csv_multiline_record_names_first_line(tmp_path):
    text = 'note,b,species\n"two\nlines",2,x\n3,4,y\n'
    error = csv_error(tmp_path, text)

    assert str(error) == "iris.csv, line 2, column 'note': 'two\nlines' is not a number"


def test_csv_unterminated_quote(tmp_path):
    error = csv_error(tmp_path, 'a,b,species\n1,2,x\n"3,4,y\n5,6,x\n')

    assert str(error) == "iris.csv, line 3: not valid CSV (unexpected end of data)"
    assert error.code == "parse"


def test_csv_line_numbers_count_blank_lines(tmp_path):
    error = csv_error(tmp_path, "a,b,species\n1,2,x\n\n\n3,b,y\n")

    assert str(error) == "iris.csv, line 5, column 'b': 'b' is not a number"


def test_csv_too_many_classes(tmp_path):
    rows = ["a,price"] + [f"{i},{i * 1.5}" for i in range(12)]
    path = write_csv(tmp_path, "\n".join(rows))
    with pytest.raises(DatasetError) as caught:
        inspect(path, "csv", "iris.csv", limits=Limits(max_classes=10))

    assert str(caught.value) == (
        "iris.csv, column 'price': found 12 distinct values, more than the 10 classes supported; "
        "for a numeric target choose the regression task"
    )


def test_csv_not_utf8(tmp_path):
    path = tmp_path / "iris.csv"
    path.write_bytes("a,b\n1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DatasetError) as caught:
        inspect(path, "csv", "iris.csv")

    assert str(caught.value) == "iris.csv: the file is not UTF-8 text; save it as CSV with UTF-8 encoding"


def test_error_translates_through_catalogue(tmp_path):
    error = csv_error(tmp_path, "a,b,species\n1,2,x\n3,,y\n")
    catalogue = {"%(file)s, line %(line)d, column '%(column)s': missing value":
                 "%(file)s 第 %(line)d 行 '%(column)s' 列：缺少值"}

    assert error.translate(lambda text: catalogue.get(text, text)) == "iris.csv 第 3 行 'b' 列：缺少值"


# NPZ


def write_npz(tmp_path, name="arrays.npz", **arrays):
    path = tmp_path / name
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def npz_error(tmp_path, task="classification", **arrays) -> str:
    path = write_npz(tmp_path, **arrays)
    with pytest.raises(DatasetError) as caught:
        inspect(path, "npz", "arrays.npz", task=task)
    return str(caught.value)


def test_npz_summary(tmp_path):
    x = np.arange(24, dtype=np.float64).reshape(6, 4)
    y = np.array([0, 1, 0, 1, 2, 2])
    path = write_npz(tmp_path, X=x, y=y, feature_names=np.array(["a", "b", "c", "d"]))
    summary = inspect(path, "npz", "arrays.npz")

    assert summary.num_rows == 6
    assert summary.num_features == 4
    assert summary.input_shape == [4]
    assert summary.class_names == ["0", "1", "2"]
    assert summary.class_counts == {"0": 2, "1": 2, "2": 2}
    assert summary.feature_names == ["a", "b", "c", "d"]
    assert summary.preview[1] == [4.0, 5.0, 6.0, 7.0, "1"]


def test_npz_float_labels_named_as_integers(tmp_path):
    path = write_npz(tmp_path, X=np.ones((4, 2)), y=np.array([0.0, 1.0, 1.0, 0.0]))
    summary = inspect(path, "npz", "arrays.npz")

    assert summary.class_names == ["0", "1"]


def test_npz_images_keep_shape(tmp_path):
    path = write_npz(tmp_path, X=np.zeros((4, 1, 5, 6), dtype=np.uint8), y=np.array(["a", "b", "a", "b"]))
    summary = inspect(path, "npz", "arrays.npz")
    x, y, class_names = load_arrays(path, "npz")

    assert summary.input_shape == [1, 5, 6]
    assert summary.num_features == 30
    assert summary.preview == []
    assert x.shape == (4, 1, 5, 6)
    assert x.dtype == np.float32
    assert y.tolist() == [0, 1, 0, 1]
    assert class_names == ["a", "b"]


def test_npz_regression(tmp_path):
    path = write_npz(tmp_path, X=np.ones((3, 2)), y=np.array([1.5, 2.5, 3.5]))
    summary = inspect(path, "npz", "arrays.npz", task="regression")

    assert summary.num_classes is None
    assert summary.preview[0] == [1.0, 1.0, 1.5]


@pytest.mark.parametrize(("arrays", "task", "message"), [
    ({"X": np.ones((3, 2))}, "classification", "arrays.npz: missing array 'y'; found X"),
    ({}, "classification", "arrays.npz: missing array 'X'; the file contains no arrays"),
    ({"X": np.ones(3), "y": np.ones(3)}, "classification",
     "arrays.npz, array 'X': must have at least 2 dimensions (examples, features), got shape (3,)"),
    ({"X": np.ones((0, 2)), "y": np.ones(0)}, "classification", "arrays.npz, array 'X': contains no examples"),
    ({"X": np.array([["a", "b"], ["c", "d"]]), "y": np.array([0, 1])}, "classification",
     "arrays.npz, array 'X': must be numeric, got dtype <U1"),
    ({"X": np.array([[1.0, 2.0], [np.nan, 1.0], [0.0, 0.0]]), "y": np.array([0, 1, 0])}, "classification",
     "arrays.npz, array 'X', example 1: contains NaN or infinity"),
    ({"X": np.ones((3, 2)), "y": np.array([0, 1])}, "classification",
     "arrays.npz, array 'y': has 2 entries but X has 3 examples"),
    ({"X": np.ones((3, 2)), "y": np.array([1, 1, 1])}, "classification",
     "arrays.npz, array 'y': classification needs at least 2 classes, found 1 (1)"),
    ({"X": np.ones((3, 2)), "y": np.array([0.0, np.nan, 1.0])}, "classification",
     "arrays.npz, array 'y', example 1: missing label (NaN or infinity)"),
    ({"X": np.ones((3, 2)), "y": np.ones((3, 2))}, "classification",
     "arrays.npz, array 'y': classification needs one label per example, got shape (3, 2)"),
    ({"X": np.ones((3, 2)), "y": np.array(["a", "b", "c"])}, "regression",
     "arrays.npz, array 'y': a regression target must be numeric with one or two dimensions, got dtype <U1 "
     "and shape (3,)"),
    ({"X": np.ones((3, 2)), "y": np.array([1.0, np.inf, 2.0])}, "regression",
     "arrays.npz, array 'y', example 1: contains NaN or infinity"),
    ({"X": np.ones((3, 2)), "y": np.array([0, 1, 0]), "feature_names": np.array(["a"])}, "classification",
     "arrays.npz, array 'feature_names': expected 2 strings, one per feature, got (1,) of dtype <U1"),
])
def test_npz_rejected(tmp_path, arrays, task, message):
    assert npz_error(tmp_path, task=task, **arrays) == message


def test_npz_object_array_not_unpickled(tmp_path):
    path = tmp_path / "arrays.npz"
    with open(path, "wb") as handle:
        np.savez(handle, X=np.ones((2, 2)), y=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DatasetError) as caught:
        inspect(path, "npz", "arrays.npz")

    assert str(caught.value) == (
        "arrays.npz, array 'y': contains Python objects, which are not loaded for safety; "
        "save numeric or string arrays"
    )


def test_npz_not_an_archive(tmp_path):
    path = tmp_path / "arrays.npz"
    path.write_text("not numpy")
    with pytest.raises(DatasetError) as caught:
        inspect(path, "npz", "arrays.npz")

    assert str(caught.value).startswith("arrays.npz: not a readable NPZ file (")


def test_npz_single_npy_array(tmp_path):
    path = tmp_path / "arrays.npz"
    with open(path, "wb") as handle:
        np.save(handle, np.ones((3, 2)))
    with pytest.raises(DatasetError) as caught:
        inspect(path, "npz", "arrays.npz")

    assert str(caught.value) == "arrays.npz: contains a single array; save X and y with numpy.savez"


def test_npz_uncompressed_size_limit(tmp_path):
    path = write_npz(tmp_path, X=np.zeros((1000, 100)), y=np.zeros(1000))
    with pytest.raises(DatasetError) as caught:
        inspect(path, "npz", "arrays.npz", limits=Limits(max_uncompressed_bytes=100_000))

    assert str(caught.value) == "arrays.npz: the arrays total 0.8 MB uncompressed, more than the limit of 0.1 MB"


@pytest.mark.parametrize("name", ["digits", "wine", "breast_cancer"])
def test_builtin_datasets_validate(tmp_path, name):
    path = tmp_path / f"{name}.npz"
    write_builtin_npz(name, path)
    summary = inspect(path, "npz", path.name)

    expected = {"digits": (1797, [8, 8], 10), "wine": (178, [13], 3), "breast_cancer": (569, [30], 2)}[name]
    assert (summary.num_rows, summary.input_shape, summary.num_classes) == expected
    assert sum(summary.class_counts.values()) == summary.num_rows


# ZIP of image folders


def png(size=(4, 3), mode="RGB", color=(200, 10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color if mode == "RGB" else color[0]).save(buffer, format="PNG")
    return buffer.getvalue()


def write_zip(tmp_path, entries: dict, name="pets.zip"):
    """Write a ZIP archive; an entry whose value is None is a directory."""
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as archive:
        for entry, data in entries.items():
            if data is None:
                archive.writestr(zipfile.ZipInfo(entry), b"")
            else:
                archive.writestr(entry, data)
    return path


def zip_error(tmp_path, entries, limits=Limits(), task="classification") -> DatasetError:
    path = write_zip(tmp_path, entries)
    with pytest.raises(DatasetError) as caught:
        inspect(path, "images", "pets.zip", task=task, limits=limits)
    return caught.value


def test_zip_summary(tmp_path):
    path = write_zip(tmp_path, {
        "cats/1.png": png(), "cats/2.png": png(size=(8, 6)), "cats/3.png": png(),
        "dogs/1.png": png(color=(0, 0, 255)), "dogs/2.png": png(),
    })
    summary = inspect(path, "images", "pets.zip")

    assert summary.format == "images"
    assert summary.num_rows == 5
    assert summary.input_shape == [3, 3, 4]
    assert summary.num_features == 36
    assert summary.class_names == ["cats", "dogs"]
    assert summary.class_counts == {"cats": 3, "dogs": 2}
    assert summary.preview == [
        {"class": "cats", "entries": ["cats/1.png", "cats/2.png", "cats/3.png"]},
        {"class": "dogs", "entries": ["dogs/1.png", "dogs/2.png"]},
    ]


def test_zip_load_arrays(tmp_path):
    path = write_zip(tmp_path, {"cats/1.png": png(), "dogs/1.png": png(color=(0, 0, 255))})
    x, y, class_names = load_arrays(path, "images")

    assert x.shape == (2, 3, 3, 4)
    assert x.dtype == np.float32
    assert np.allclose(x[0, :, 0, 0], [200 / 255, 10 / 255, 10 / 255])
    assert np.allclose(x[1, :, 0, 0], [0, 0, 1])
    assert y.tolist() == [0, 1]
    assert class_names == ["cats", "dogs"]


def test_zip_grayscale_when_all_gray(tmp_path):
    path = write_zip(tmp_path, {"a/1.png": png(mode="L"), "b/1.png": png(mode="L", color=(30,))})
    x, _, _ = load_arrays(path, "images")

    assert x.shape == (2, 1, 3, 4)
    assert np.isclose(x[1, 0, 0, 0], 30 / 255)


def test_zip_rgb_when_any_color(tmp_path):
    path = write_zip(tmp_path, {"a/1.png": png(mode="L"), "b/1.png": png()})
    x, _, _ = load_arrays(path, "images")

    assert x.shape == (2, 3, 3, 4)
    assert np.allclose(x[0, :, 0, 0], 200 / 255)


def test_zip_size_capped(tmp_path):
    path = write_zip(tmp_path, {"a/1.png": png(size=(200, 100)), "b/1.png": png(size=(10, 10))})
    summary = inspect(path, "images", "pets.zip")
    capped = inspect(path, "images", "pets.zip", limits=Limits(max_image_side=20))

    assert summary.input_shape == [3, 32, 64]
    assert capped.input_shape == [3, 10, 20]


def test_zip_root_folder_and_junk_ignored(tmp_path):
    path = write_zip(tmp_path, {
        "pets/": None, "pets/cats/": None, "pets/cats/1.png": png(), "pets/dogs/1.png": png(),
        "__MACOSX/pets/cats/._1.png": b"junk", "pets/.DS_Store": b"junk",
    })
    summary = inspect(path, "images", "pets.zip")

    assert summary.class_names == ["cats", "dogs"]
    assert summary.preview[0] == {"class": "cats", "entries": ["pets/cats/1.png"]}


def test_zip_nested_folders_count_for_class(tmp_path):
    path = write_zip(tmp_path, {"cats/indoor/1.png": png(), "cats/2.png": png(), "dogs/1.png": png()})
    summary = inspect(path, "images", "pets.zip")

    assert summary.class_counts == {"cats": 2, "dogs": 1}


@pytest.mark.parametrize(("entries", "message", "code"), [
    ({"cats/1.png": png(), "../dogs/1.png": png()},
     "pets.zip, entry '../dogs/1.png': the path is absolute or contains '..'; such archives are rejected",
     "unsafe_path"),
    ({"cats/1.png": png(), "cats/../../x.png": png()},
     "pets.zip, entry 'cats/../../x.png': the path is absolute or contains '..'; such archives are rejected",
     "unsafe_path"),
    ({"cats/1.png": png(), "/etc/dogs/1.png": png()},
     "pets.zip, entry '/etc/dogs/1.png': the path is absolute or contains '..'; such archives are rejected",
     "unsafe_path"),
    ({}, "pets.zip: contains no class folders; expected one folder per class, such as cats/1.png and dogs/1.png",
     "no_class_folders"),
    ({"cats/1.png": png(), "readme.txt": b"hello"},
     "pets.zip, entry 'readme.txt': is not inside a class folder; put each image in a folder named after its class",
     "no_class_folder"),
    ({"cats/1.png": png(), "dogs/": None}, "pets.zip: class folder 'dogs' contains no images", "empty_class"),
    ({"cats/1.png": png(), "cats/2.png": png()},
     "pets.zip: classification needs at least 2 class folders, found 1 (cats)", "too_few_classes"),
    ({"cats/1.png": png(), "dogs/notes.txt": b"not an image"},
     "pets.zip, entry 'dogs/notes.txt': not a decodable image (cannot identify image file <_io.BytesIO object at",
     "bad_image"),
])
def test_zip_rejected(tmp_path, entries, message, code):
    error = zip_error(tmp_path, entries)

    assert str(error).startswith(message)
    assert error.code == code
    if code != "bad_image":
        assert str(error) == message


def test_zip_traversal_rejected_before_decoding(tmp_path):
    error = zip_error(tmp_path, {"../escape.png": b"not even an image"})

    assert error.code == "unsafe_path"
    assert not (tmp_path.parent / "escape.png").exists()


def test_zip_not_an_archive(tmp_path):
    path = tmp_path / "pets.zip"
    path.write_bytes(b"PK but not really")
    with pytest.raises(DatasetError) as caught:
        inspect(path, "images", "pets.zip")

    assert str(caught.value) == "pets.zip: not a ZIP archive"


def test_zip_too_many_entries(tmp_path):
    entries = {f"cats/{i}.png": png() for i in range(6)}
    error = zip_error(tmp_path, entries, limits=Limits(max_entries=5))

    assert str(error) == "pets.zip: contains 6 entries, more than the limit of 5"
    assert error.code == "too_many_files"


def test_zip_bomb_guard(tmp_path):
    entries = {"cats/1.png": png(), "dogs/zeros.png": bytes(3 * 1024 * 1024)}
    path = tmp_path / "pets.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for entry, data in entries.items():
            archive.writestr(entry, data)
    assert path.stat().st_size < 20_000
    with pytest.raises(DatasetError) as caught:
        inspect(path, "images", "pets.zip", limits=Limits(max_uncompressed_bytes=2 * 1024 * 1024))

    assert str(caught.value) == "pets.zip: the entries total 3.0 MB uncompressed, more than the limit of 2.0 MB"


def test_zip_image_pixel_limit(tmp_path):
    error = zip_error(tmp_path, {"cats/1.png": png(size=(100, 50)), "dogs/1.png": png()},
                      limits=Limits(max_image_pixels=1000))

    assert str(error) == (
        "pets.zip, entry 'cats/1.png': the image is 100×50 pixels, more than the limit of 1000 pixels"
    )


def test_zip_regression_rejected(tmp_path):
    error = zip_error(tmp_path, {"cats/1.png": png(), "dogs/1.png": png()}, task="regression")

    assert str(error) == "pets.zip: image folders give class labels, so the task must be classification"
    assert error.field == "task"


def test_unsupported_format(tmp_path):
    path = write_csv(tmp_path, IRIS)
    with pytest.raises(DatasetError) as caught:
        inspect(path, "parquet", "iris.parquet")

    assert str(caught.value) == "iris.parquet: unsupported format 'parquet'; expected csv, npz or images"
    assert caught.value.field == "format"


@pytest.mark.parametrize(("filename", "fmt"), [
    ("iris.csv", "csv"), ("IRIS.CSV", "csv"), ("x.npz", "npz"), ("pets.zip", "images"), ("notes.txt", None),
    ("noextension", None),
])
def test_format_for_filename(filename, fmt):
    assert format_for_filename(filename) == fmt
