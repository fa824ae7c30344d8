"""Validate, summarise and load datasets.

Formats: CSV (a header row, one target column), NPZ (arrays X and y) and ZIP
of image folders (one folder per class). `inspect` validates a file and
returns its summary; `load_arrays` returns (X, y) for training.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DatasetError(ValueError):
    """A dataset file is invalid: `location` names the file, line or entry at fault."""

    def __init__(self, location: str, message: str):
        super().__init__(f"{location}: {message}")
        self.location = location
        self.message = message


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
    preview: list[list] = field(default_factory=list)


def inspect(path: Path, fmt: str, name: str, target_column: str = "", task: str = "classification") -> DatasetSummary:
    """Validate the file at `path` (uploaded as `name`) and summarise it, or raise DatasetError."""
    if fmt == "npz":
        x, y, class_names = _read_npz(path, name, task)
        return _summarise(fmt, task, x, y, class_names, [])
    raise DatasetError(name, f"unsupported format {fmt!r}")


def load_arrays(path: Path, fmt: str, target_column: str = "", task: str = "classification"):
    """Return (X, y, class_names) ready for training: X float32, y class indices or float targets."""
    if fmt == "npz":
        return _read_npz(path, Path(path).name, task)
    raise DatasetError(str(path), f"unsupported format {fmt!r}")


def _read_npz(path: Path, name: str, task: str):
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(name, f"not a readable NPZ file ({exc})") from None
    with archive:
        for key in ("X", "y"):
            if key not in archive.files:
                raise DatasetError(name, f"missing array {key!r}; found {', '.join(archive.files) or 'none'}")
        x, y = archive["X"], archive["y"]
    if x.ndim < 2:
        raise DatasetError(f"{name}: X", f"must have at least 2 dimensions (examples, features), got shape {x.shape}")
    if len(x) != len(y):
        raise DatasetError(f"{name}: y", f"has {len(y)} entries but X has {len(x)} examples")
    if not np.issubdtype(x.dtype, np.number):
        raise DatasetError(f"{name}: X", f"must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        row = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0][0])
        raise DatasetError(f"{name}: X[{row}]", "contains NaN or infinity")
    return x, *_encode_target(y, task, f"{name}: y")


def _encode_target(y: np.ndarray, task: str, location: str):
    if task == "regression":
        try:
            y = y.astype(np.float32)
        except ValueError:
            raise DatasetError(location, "a regression target must be numeric") from None
        if not np.isfinite(y).all():
            raise DatasetError(location, "contains NaN or infinity")
        return y, []
    names, codes = np.unique(y.astype(str) if y.dtype.kind not in "iub" else y, return_inverse=True)
    if len(names) < 2:
        raise DatasetError(location, f"classification needs at least 2 classes, found {len(names)}")
    return codes.astype(np.int64), [str(name) for name in names]


def _summarise(fmt, task, x, y, class_names, feature_names, preview_rows: int = 10) -> DatasetSummary:
    counts = {}
    if task == "classification":
        values, occurrences = np.unique(y, return_counts=True)
        counts = {class_names[int(v)]: int(c) for v, c in zip(values, occurrences, strict=True)}
    flat = x.reshape(len(x), -1)
    preview = []
    if x.ndim == 2:
        for row, target in zip(flat[:preview_rows], y[:preview_rows], strict=False):
            label = class_names[int(target)] if task == "classification" else float(target)
            preview.append([round(float(v), 4) for v in row[:20]] + [label])
    return DatasetSummary(
        format=fmt, task=task, num_rows=len(x), num_features=flat.shape[1], input_shape=list(x.shape[1:]),
        num_classes=len(class_names) if task == "classification" else None, class_names=class_names,
        class_counts=counts, feature_names=feature_names, preview=preview,
    )


BUILTIN = {
    "digits": ("load_digits", "8×8 images of handwritten digits, 10 classes"),
    "wine": ("load_wine", "chemical analysis of wines, 3 cultivars"),
    "breast_cancer": ("load_breast_cancer", "breast mass measurements, malignant or benign"),
}


def write_builtin_npz(name: str, path: Path) -> None:
    """Write scikit-learn's bundled data set `name` as an NPZ file; digits keeps its 8×8 image shape."""
    import sklearn.datasets

    loader_name, _ = BUILTIN[name]
    bunch = getattr(sklearn.datasets, loader_name)()
    x = bunch.images if name == "digits" else bunch.data
    np.savez(path, X=x.astype(np.float32), y=bunch.target)
