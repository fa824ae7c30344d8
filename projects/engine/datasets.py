"""Validate, summarise and load datasets.

Formats: CSV (a header row, one target column), NPZ (arrays X and y) and ZIP
of image folders (one folder per class). `inspect` validates a file and
returns its summary; `load_arrays` returns the arrays that `inspect`
validated, for training. Neither imports Django.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from projects.engine.readers.common import DEFAULT_LIMITS, DatasetError, Limits, ParsedDataset, gettext_noop
from projects.engine.readers.csv_table import read_csv
from projects.engine.readers.image_zip import read_image_zip
from projects.engine.readers.npz_arrays import read_npz

__all__ = ["DEFAULT_LIMITS", "DatasetError", "DatasetSummary", "Limits", "inspect", "load_arrays",
           "write_builtin_npz", "format_for_filename", "BUILTIN"]

FORMATS = ("csv", "npz", "images")
TASKS = ("classification", "regression")
# File extension, without the dot, by format. Uploads are stored under it.
EXTENSIONS = {"csv": "csv", "npz": "npz", "images": "zip"}
# Table previews show this many rows and at most this many feature columns.
PREVIEW_ROWS = 10
PREVIEW_COLUMNS = 20


@dataclass
class DatasetSummary:
    format: str
    task: str
    num_rows: int
    num_features: int
    input_shape: list[int]
    num_classes: int | None = None
    class_names: list[str] = field(default_factory=list)
    class_counts: dict[str, int] = field(default_factory=dict)
    feature_names: list[str] = field(default_factory=list)
    # Tables: the first rows, features (at most PREVIEW_COLUMNS) then the target.
    # Images: {"class", "entries"} with a few entry names per class.
    preview: list = field(default_factory=list)
    # The CSV column used as the target, resolved when none was named.
    target_column: str = ""


def format_for_filename(filename: str) -> str | None:
    """Return the format that a file name's extension implies, or None."""
    suffix = Path(filename).suffix.lower().lstrip(".")
    return {extension: fmt for fmt, extension in EXTENSIONS.items()}.get(suffix)


def inspect(path: Path, fmt: str, name: str, target_column: str = "", task: str = "classification",
            limits: Limits = DEFAULT_LIMITS) -> DatasetSummary:
    """Validate the file at `path` (uploaded as `name`) and summarise it, or raise DatasetError."""
    parsed = _read(Path(path), fmt, name, target_column, task, limits)
    return _summarise(fmt, task, parsed)


def load_arrays(path: Path, fmt: str, target_column: str = "", task: str = "classification",
                limits: Limits = DEFAULT_LIMITS) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Return (X, y, class_names) ready for training: X float32, y class indices or float targets."""
    path = Path(path)
    parsed = _read(path, fmt, path.name, target_column, task, limits)
    return parsed.x, parsed.y, parsed.class_names


def _read(path: Path, fmt: str, name: str, target_column: str, task: str, limits: Limits) -> ParsedDataset:
    if task not in TASKS:
        raise DatasetError(gettext_noop("unsupported task '%(task)s'; expected classification or regression"),
                           field="task", code="invalid_choice", task=task)
    if fmt == "csv":
        return read_csv(path, name, target_column, task, limits)
    if fmt == "npz":
        return read_npz(path, name, task, limits)
    if fmt == "images":
        return read_image_zip(path, name, task, limits)
    raise DatasetError(gettext_noop("%(file)s: unsupported format '%(format)s'; expected csv, npz or images"),
                       field="format", code="invalid_choice", file=name, format=fmt)


def _summarise(fmt: str, task: str, parsed: ParsedDataset) -> DatasetSummary:
    x, y = parsed.x, parsed.y
    counts = {}
    if task == "classification":
        occurrences = np.bincount(y, minlength=len(parsed.class_names))
        counts = {name: int(count) for name, count in zip(parsed.class_names, occurrences, strict=True)}

    preview = parsed.preview
    if x.ndim == 2 and not preview:
        preview = [_preview_row(row, target, task, parsed.class_names) for row, target in
                   zip(x[:PREVIEW_ROWS], y[:PREVIEW_ROWS], strict=False)]
    return DatasetSummary(
        format=fmt, task=task, num_rows=len(x), num_features=int(np.prod(x.shape[1:])),
        input_shape=[int(size) for size in x.shape[1:]],
        num_classes=len(parsed.class_names) if task == "classification" else None,
        class_names=parsed.class_names, class_counts=counts, feature_names=parsed.feature_names,
        preview=preview, target_column=parsed.target_column,
    )


def _preview_row(row: np.ndarray, target, task: str, class_names: list[str]) -> list:
    if task == "classification":
        label = class_names[int(target)]
    else:
        label = [round(float(value), 4) for value in np.ravel(target)]
        label = label[0] if len(label) == 1 else label
    return [round(float(value), 4) for value in row[:PREVIEW_COLUMNS]] + [label]


BUILTIN = {
    "digits": ("load_digits", "8×8 images of handwritten digits, 10 classes"),
    "wine": ("load_wine", "chemical analysis of wines, 3 cultivars"),
    "breast_cancer": ("load_breast_cancer", "breast mass measurements, malignant or benign"),
}


def write_builtin_npz(name: str, path: Path) -> None:
    """Write scikit-learn's bundled data set `name` as an NPZ file.

    Digits keeps its 8×8 image shape. The tables carry their feature names,
    and labels are scikit-learn's target names (0-9, class_0, malignant).
    """
    import sklearn.datasets

    loader_name, _ = BUILTIN[name]
    bunch = getattr(sklearn.datasets, loader_name)()
    labels = np.asarray(bunch.target_names)[bunch.target]
    arrays = {"X": (bunch.images if name == "digits" else bunch.data).astype(np.float32), "y": labels}
    if name != "digits":
        arrays["feature_names"] = np.asarray(bunch.feature_names, dtype=str)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
