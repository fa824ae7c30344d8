"""CSV tables: a header row, numeric feature columns and one target column."""

import csv
import math
from pathlib import Path

import numpy as np

from projects.engine.readers.common import DatasetError, Limits, ParsedDataset, encode_classes, gettext_noop

# Cells read as a missing value rather than as text; compared in lower case.
MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}
# Values quoted in messages are shortened to this many characters.
MAX_QUOTED = 40
# Unknown-target messages list at most this many column names.
MAX_LISTED_COLUMNS = 50


def read_csv(path: Path, name: str, target_column: str, task: str, limits: Limits) -> ParsedDataset:
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return _parse(csv.reader(handle, strict=True), name, target_column, task, limits)
    except UnicodeDecodeError:
        raise DatasetError(gettext_noop("%(file)s: the file is not UTF-8 text; save it as CSV with UTF-8 encoding"),
                           code="encoding", file=name) from None


def _parse(reader, name: str, target_column: str, task: str, limits: Limits) -> ParsedDataset:
    header = _read_header(reader, name)
    target_index = _target_index(header, target_column, name)
    feature_indexes = [i for i in range(len(header)) if i != target_index]
    target = header[target_index]

    features: list[list[float]] = []
    targets: list = []
    # A quoted field may span lines, so messages name the line where a record starts.
    start = reader.line_num + 1
    try:
        for row in reader:
            line, start = start, reader.line_num + 1
            if not row:
                continue  # csv yields an empty list for a blank line
            if len(row) != len(header):
                raise DatasetError(gettext_noop("%(file)s, line %(line)d: expected %(expected)d fields, got %(got)d"),
                                   code="ragged_row", file=name, line=line, expected=len(header), got=len(row))
            features.append([_number(row[i], name, line, header[i]) for i in feature_indexes])
            targets.append(_target_value(row[target_index], task, name, line, target))
    except csv.Error as exc:
        raise DatasetError(gettext_noop("%(file)s, line %(line)d: not valid CSV (%(error)s)"),
                           code="parse", file=name, line=start, error=str(exc)) from None

    if not features:
        raise DatasetError(gettext_noop("%(file)s: the file has a header row but no data rows"),
                           code="no_rows", file=name)

    x = np.asarray(features, dtype=np.float32)
    if task == "regression":
        y, class_names = np.asarray(targets, dtype=np.float32), []
    else:
        y, class_names = encode_classes(targets, "column", {"file": name, "column": target}, limits)
    return ParsedDataset(x=x, y=y, class_names=class_names, feature_names=[header[i] for i in feature_indexes],
                         target_column=target)


def _read_header(reader, name: str) -> list[str]:
    try:
        header = next((row for row in reader if row), None)
    except csv.Error as exc:
        raise DatasetError(gettext_noop("%(file)s, line %(line)d: not valid CSV (%(error)s)"),
                           code="parse", file=name, line=reader.line_num, error=str(exc)) from None
    if header is None:
        raise DatasetError(gettext_noop("%(file)s: the file is empty"), code="empty", file=name)

    line = reader.line_num
    header = [column.strip() for column in header]
    if len(header) < 2:
        raise DatasetError(
            gettext_noop("%(file)s, line %(line)d: found 1 column; a CSV dataset needs at least one feature column "
                         "and a target column, separated by commas"),
            code="too_few_columns", file=name, line=line,
        )
    seen = set()
    for position, column in enumerate(header, start=1):
        if not column:
            raise DatasetError(gettext_noop("%(file)s, line %(line)d: column %(position)d has no name"),
                               code="empty_column_name", file=name, line=line, position=position)
        if column in seen:
            raise DatasetError(gettext_noop("%(file)s, line %(line)d: duplicate column name '%(column)s'"),
                               code="duplicate_column", file=name, line=line, column=column)
        seen.add(column)
    return header


def _target_index(header: list[str], target_column: str, name: str) -> int:
    if not target_column:
        return len(header) - 1
    if target_column in header:
        return header.index(target_column)

    listed = ", ".join(header[:MAX_LISTED_COLUMNS])
    if len(header) > MAX_LISTED_COLUMNS:
        listed += ", …"
    raise DatasetError(gettext_noop("%(file)s: target column '%(column)s' not found; the columns are: %(columns)s"),
                       field="target_column", code="unknown_column", file=name, column=target_column,
                       columns=listed)


def _number(cell: str, name: str, line: int, column: str) -> float:
    text = cell.strip()
    if text.lower() in MISSING:
        raise DatasetError(gettext_noop("%(file)s, line %(line)d, column '%(column)s': missing value"),
                           code="missing_value", file=name, line=line, column=column)
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(gettext_noop("%(file)s, line %(line)d, column '%(column)s': '%(value)s' is not a number"),
                           code="not_a_number", file=name, line=line, column=column, value=_quote(text)) from None
    if not math.isfinite(value):
        raise DatasetError(
            gettext_noop("%(file)s, line %(line)d, column '%(column)s': '%(value)s' is not a finite number"),
            code="not_finite", file=name, line=line, column=column, value=_quote(text),
        )
    return value


def _target_value(cell: str, task: str, name: str, line: int, column: str):
    if task == "regression":
        try:
            return _number(cell, name, line, column)
        except DatasetError as exc:
            if exc.code != "not_a_number":
                raise
            raise DatasetError(
                gettext_noop("%(file)s, line %(line)d, column '%(column)s': '%(value)s' is not a number, "
                             "and a regression target must be numeric"),
                code="not_a_number", file=name, line=line, column=column, value=exc.params["value"],
            ) from None

    label = cell.strip()
    if label.lower() in MISSING:
        raise DatasetError(gettext_noop("%(file)s, line %(line)d, column '%(column)s': missing value"),
                           code="missing_value", file=name, line=line, column=column)
    return label


def _quote(text: str) -> str:
    return text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED] + "…"
