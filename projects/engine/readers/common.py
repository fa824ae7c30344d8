"""Parts shared by the dataset readers: the error type, the limits and class encoding."""

from dataclasses import dataclass, field

import numpy as np


def gettext_noop(message: str) -> str:
    """Mark `message` for translation catalogues without importing Django.

    Django's makemessages extracts calls named gettext_noop; the web layer
    translates DatasetError.template at display time.
    """
    return message


class DatasetError(ValueError):
    """An invalid dataset file. The message names the file and, where known, the line, column or entry.

    `template` and `params` are the message before substitution, so that callers
    with a translation catalogue can show it in the user's language. `field` is
    the upload field at fault (file, target_column, task or format) and `code` a
    stable machine-readable reason.
    """

    def __init__(self, template: str, *, field: str = "file", code: str = "invalid", **params):
        self.template = template
        self.params = params
        self.field = field
        self.code = code
        self.message = template % params
        super().__init__(self.message)

    def translate(self, gettext) -> str:
        """Return the message rendered through `gettext`, e.g. Django's."""
        return gettext(self.template) % self.params


@dataclass(frozen=True)
class Limits:
    """Bounds that keep one upload from exhausting memory or disk.

    The same limits must be passed to inspect and load_arrays, because image
    size and accepted content depend on them.
    """

    # NOTE: the defaults are judgement calls for a shared server, not measured limits.

    # Images are scaled to the first image's size, shrunk so that no side exceeds this (pixels).
    max_image_side: int = 64
    # ZIP entries and their total uncompressed size: the zip bomb guard. Decoded
    # images stay in memory as float32, so 50,000 RGB images of 64x64 take 2.4 GB.
    max_entries: int = 50_000
    max_uncompressed_bytes: int = 2 * 1024**3
    # Pixels of one image, checked from its header before it is decoded.
    max_image_pixels: int = 25_000_000
    # More distinct labels than this usually means a regression target.
    max_classes: int = 1000


DEFAULT_LIMITS = Limits()


@dataclass
class ParsedDataset:
    """Arrays ready for training plus what a summary needs beyond them."""

    x: np.ndarray  # float32, examples first
    y: np.ndarray  # int64 class indices, or float32 targets for regression
    class_names: list[str]
    feature_names: list[str] = field(default_factory=list)
    target_column: str = ""
    # Format-specific preview; tables leave it empty and the summary shows their first rows.
    preview: list = field(default_factory=list)


def describe_size(num_bytes: int) -> str:
    return f"{num_bytes / 1024**2:.1f} MB"


def sort_labels(labels: list[str]) -> list[str]:
    """Sort distinct labels numerically when all are numbers ("2" before "10"), else as text."""
    distinct = set(labels)
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return sorted(distinct)


# Messages for too few or too many classes, by where the labels come from.
_TOO_FEW_CLASSES = {
    "column": gettext_noop("%(file)s, column '%(column)s': classification needs at least 2 classes, "
                           "found %(count)d (%(classes)s)"),
    "array": gettext_noop("%(file)s, array 'y': classification needs at least 2 classes, found %(count)d "
                          "(%(classes)s)"),
    "folders": gettext_noop("%(file)s: classification needs at least 2 class folders, found %(count)d "
                            "(%(classes)s)"),
}
_TOO_MANY_CLASSES = {
    "column": gettext_noop("%(file)s, column '%(column)s': found %(count)d distinct values, more than the "
                           "%(limit)d classes supported; for a numeric target choose the regression task"),
    "array": gettext_noop("%(file)s, array 'y': found %(count)d distinct values, more than the %(limit)d "
                          "classes supported; for a numeric target choose the regression task"),
    "folders": gettext_noop("%(file)s: found %(count)d class folders, more than the %(limit)d classes supported"),
}


def encode_classes(labels: list[str], source: str, where: dict, limits: Limits) -> tuple[np.ndarray, list[str]]:
    """Turn text labels into class indices, checking the number of classes.

    `source` is "column" (CSV), "array" (the NPZ array y) or "folders" (image
    folders). `where` contains the message parameters that name it: file, plus column for CSV.
    """
    class_names = sort_labels(labels)
    if len(class_names) < 2:
        raise DatasetError(_TOO_FEW_CLASSES[source], code="too_few_classes", count=len(class_names),
                           classes=", ".join(class_names), **where)
    if len(class_names) > limits.max_classes:
        raise DatasetError(_TOO_MANY_CLASSES[source], code="too_many_classes", count=len(class_names),
                           limit=limits.max_classes, **where)

    index = {name: i for i, name in enumerate(class_names)}
    codes = np.fromiter((index[label] for label in labels), dtype=np.int64, count=len(labels))
    return codes, class_names
