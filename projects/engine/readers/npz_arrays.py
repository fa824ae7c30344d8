"""NPZ archives written by numpy.savez: arrays X (examples first) and y, optionally feature_names."""

import zipfile
from pathlib import Path

import numpy as np

from projects.engine.readers.common import (
    DatasetError,
    Limits,
    ParsedDataset,
    describe_size,
    encode_classes,
    gettext_noop,
)


def read_npz(path: Path, name: str, task: str, limits: Limits) -> ParsedDataset:
    _check_archive(path, name, limits)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(gettext_noop("%(file)s: not a readable NPZ file (%(error)s)"),
                           code="unreadable", file=name, error=str(exc)) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError(gettext_noop("%(file)s: contains a single array; save X and y with numpy.savez"),
                           code="missing_array", file=name)

    with archive:
        for key in ("X", "y"):
            if key not in archive.files:
                if not archive.files:
                    raise DatasetError(gettext_noop("%(file)s: missing array '%(array)s'; the file contains no arrays"),
                                       code="missing_array", file=name, array=key)
                raise DatasetError(gettext_noop("%(file)s: missing array '%(array)s'; found %(found)s"),
                                   code="missing_array", file=name, array=key, found=", ".join(archive.files))
        x = _load(archive, "X", name)
        y = _load(archive, "y", name)
        feature_names = _load(archive, "feature_names", name) if "feature_names" in archive.files else None

    x = _check_features(x, name)
    y, class_names = _check_target(y, len(x), task, name, limits)
    return ParsedDataset(x=x, y=y, class_names=class_names,
                         feature_names=_check_feature_names(feature_names, x, name))


def _check_archive(path: Path, name: str, limits: Limits) -> None:
    """Reject an NPZ whose arrays would unpack to more than the limit, before numpy reads them."""
    try:
        with zipfile.ZipFile(path) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        return  # np.load reports a lone .npy file or garbage
    if total > limits.max_uncompressed_bytes:
        raise DatasetError(
            gettext_noop("%(file)s: the arrays total %(size)s uncompressed, more than the limit of %(limit)s"),
            code="too_large", file=name, size=describe_size(total), limit=describe_size(limits.max_uncompressed_bytes),
        )


def _load(archive, key: str, name: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DatasetError(
                gettext_noop("%(file)s, array '%(array)s': contains Python objects, which are not loaded for "
                             "safety; save numeric or string arrays"),
                code="object_array", file=name, array=key,
            ) from None
        raise DatasetError(gettext_noop("%(file)s, array '%(array)s': cannot be read (%(error)s)"),
                           code="unreadable", file=name, array=key, error=str(exc)) from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(gettext_noop("%(file)s, array '%(array)s': cannot be read (%(error)s)"),
                           code="unreadable", file=name, array=key, error=str(exc)) from None


def _check_features(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim < 2:
        raise DatasetError(
            gettext_noop("%(file)s, array 'X': must have at least 2 dimensions (examples, features), "
                         "got shape %(shape)s"),
            code="bad_shape", file=name, shape=str(x.shape),
        )
    if len(x) == 0:
        raise DatasetError(gettext_noop("%(file)s, array 'X': contains no examples"), code="no_rows", file=name)
    if x.dtype.kind not in "iuf":
        raise DatasetError(gettext_noop("%(file)s, array 'X': must be numeric, got dtype %(dtype)s"),
                           code="not_a_number", file=name, dtype=str(x.dtype))

    x = x.astype(np.float32)
    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if not finite.all():
        raise DatasetError(gettext_noop("%(file)s, array 'X', example %(index)d: contains NaN or infinity"),
                           code="not_finite", file=name, index=int(np.argmin(finite)))
    return x


def _check_target(y: np.ndarray, num_examples: int, task: str, name: str, limits: Limits):
    if y.ndim == 0 or len(y) != num_examples:
        length = 0 if y.ndim == 0 else len(y)
        raise DatasetError(gettext_noop("%(file)s, array 'y': has %(got)d entries but X has %(expected)d examples"),
                           code="length_mismatch", file=name, got=length, expected=num_examples)
    if task == "regression":
        return _regression_target(y, name), []

    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DatasetError(
            gettext_noop("%(file)s, array 'y': classification needs one label per example, got shape %(shape)s"),
            code="bad_shape", file=name, shape=str(y.shape),
        )
    if y.dtype.kind == "f":
        missing = ~np.isfinite(y)
        if missing.any():
            raise DatasetError(gettext_noop("%(file)s, array 'y', example %(index)d: missing label (NaN or infinity)"),
                               code="missing_value", file=name, index=int(np.argmax(missing)))
        if np.all(y == np.round(y)):
            y = y.astype(np.int64)  # labels saved as 0.0, 1.0 are named "0", "1"
    if y.dtype.kind not in "iubUS":
        raise DatasetError(gettext_noop("%(file)s, array 'y': labels must be integers or strings, got dtype %(dtype)s"),
                           code="bad_dtype", file=name, dtype=str(y.dtype))
    labels = [label.decode() if isinstance(label, bytes) else str(label) for label in y.tolist()]
    return encode_classes(labels, "array", {"file": name}, limits)


def _regression_target(y: np.ndarray, name: str) -> np.ndarray:
    if y.ndim > 2 or y.dtype.kind not in "iuf":
        raise DatasetError(
            gettext_noop("%(file)s, array 'y': a regression target must be numeric with one or two dimensions, "
                         "got dtype %(dtype)s and shape %(shape)s"),
            code="not_a_number", file=name, dtype=str(y.dtype), shape=str(y.shape),
        )
    y = y.astype(np.float32)
    finite = np.isfinite(y.reshape(len(y), -1)).all(axis=1)
    if not finite.all():
        raise DatasetError(gettext_noop("%(file)s, array 'y', example %(index)d: contains NaN or infinity"),
                           code="not_finite", file=name, index=int(np.argmin(finite)))
    return y


def _check_feature_names(names: np.ndarray | None, x: np.ndarray, name: str) -> list[str]:
    if names is None:
        return []
    num_features = int(np.prod(x.shape[1:]))
    if names.ndim != 1 or names.dtype.kind not in "US" or len(names) != num_features:
        raise DatasetError(
            gettext_noop("%(file)s, array 'feature_names': expected %(expected)d strings, one per feature, "
                         "got %(got)s of dtype %(dtype)s"),
            code="bad_shape", file=name, expected=num_features, got=str(names.shape), dtype=str(names.dtype),
        )
    return [value.decode() if isinstance(value, bytes) else str(value) for value in names.tolist()]
