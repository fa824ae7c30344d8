"""ZIP archives of image folders: one folder per class, optionally all inside one root folder.

Entries are decoded in memory and never extracted to disk. Images become
grayscale when every image in the archive is grayscale, RGB otherwise, and all
are resized to the first image's size (in sorted entry order), shrunk so that
no side exceeds Limits.max_image_side. X has shape (n, C, H, W), values in [0, 1].
"""

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from projects.engine.readers.common import (
    DatasetError,
    Limits,
    ParsedDataset,
    describe_size,
    encode_classes,
    gettext_noop,
)

GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
# Files that archivers and desktops add; they are skipped, not decoded.
IGNORED_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}
# Entry names listed per class in the preview.
PREVIEW_ENTRIES = 3


@dataclass
class ImageEntry:
    info: zipfile.ZipInfo
    class_name: str


def read_image_zip(path: Path, name: str, task: str, limits: Limits) -> ParsedDataset:
    if task != "classification":
        raise DatasetError(gettext_noop("%(file)s: image folders give class labels, so the task must be classification"),
                           field="task", code="unsupported_task", file=name)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise DatasetError(gettext_noop("%(file)s: not a ZIP archive"), code="not_zip", file=name) from None

    with archive:
        infos = _checked_infos(archive, name, limits)
        entries, class_folders = _class_entries(infos, name)
        labels = [entry.class_name for entry in entries]
        _check_classes(class_folders, set(labels), name)
        y, class_names = encode_classes(labels, "folders", {"file": name}, limits)
        x = _decode_all(archive, entries, name, limits)

    return ParsedDataset(x=x, y=y, class_names=class_names, preview=_preview(entries, class_names))


def _checked_infos(archive: zipfile.ZipFile, name: str, limits: Limits) -> list[zipfile.ZipInfo]:
    """Check every entry's path and the archive's totals before anything is decompressed."""
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise DatasetError(gettext_noop("%(file)s: contains %(count)d entries, more than the limit of %(limit)d"),
                           code="too_many_files", file=name, count=len(infos), limit=limits.max_entries)
    total = sum(info.file_size for info in infos)
    if total > limits.max_uncompressed_bytes:
        raise DatasetError(
            gettext_noop("%(file)s: the entries total %(size)s uncompressed, more than the limit of %(limit)s"),
            code="too_large", file=name, size=describe_size(total), limit=describe_size(limits.max_uncompressed_bytes),
        )

    for info in infos:
        if _escapes(info.filename):
            raise DatasetError(
                gettext_noop("%(file)s, entry '%(entry)s': the path is absolute or contains '..'; such archives "
                             "are rejected"),
                code="unsafe_path", file=name, entry=info.filename,
            )
        if info.flag_bits & 0x1:
            raise DatasetError(gettext_noop("%(file)s, entry '%(entry)s': is encrypted"),
                               code="encrypted", file=name, entry=info.filename)
    return [info for info in infos if not _ignored(info.filename)]


def _escapes(filename: str) -> bool:
    normalised = filename.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return True
    return ".." in normalised.split("/")


def _ignored(filename: str) -> bool:
    return any(part in IGNORED_NAMES or part.startswith(".") for part in PurePosixPath(filename).parts)


def _class_entries(infos: list[zipfile.ZipInfo], name: str) -> tuple[list[ImageEntry], set[str]]:
    """Assign each file to its class folder. Returns the files, sorted, and every class folder seen."""
    paths = [(info, PurePosixPath(info.filename).parts) for info in infos]
    root = _root_folder(paths)
    if root:
        paths = [(info, parts[1:]) for info, parts in paths if len(parts) > 1]

    entries = []
    folders = set()
    for info, parts in paths:
        if info.is_dir():
            folders.add(parts[0])
            continue
        if len(parts) < 2:
            raise DatasetError(
                gettext_noop("%(file)s, entry '%(entry)s': is not inside a class folder; put each image in a "
                             "folder named after its class"),
                code="no_class_folder", file=name, entry=info.filename,
            )
        folders.add(parts[0])
        entries.append(ImageEntry(info, parts[0]))
    entries.sort(key=lambda entry: entry.info.filename)
    return entries, folders


def _root_folder(paths) -> str | None:
    """Return the single top-level folder that contains the class folders, or None when there is none."""
    tops = {parts[0] for _, parts in paths}
    if len(tops) != 1:
        return None
    has_subfolder = any(len(parts) > 2 or (len(parts) == 2 and info.is_dir()) for info, parts in paths)
    has_top_file = any(len(parts) == 1 and not info.is_dir() for info, parts in paths)
    return tops.pop() if has_subfolder and not has_top_file else None


def _check_classes(folders: set[str], with_images: set[str], name: str) -> None:
    if not folders:
        raise DatasetError(
            gettext_noop("%(file)s: contains no class folders; expected one folder per class, such as "
                         "cats/1.png and dogs/1.png"),
            code="no_class_folders", file=name,
        )
    empty = sorted(folders - with_images)
    if empty:
        raise DatasetError(gettext_noop("%(file)s: class folder '%(folder)s' contains no images"),
                           code="empty_class", file=name, folder=empty[0])


def _decode_all(archive: zipfile.ZipFile, entries: list[ImageEntry], name: str, limits: Limits) -> np.ndarray:
    size = None
    pixels = []
    all_grayscale = True
    for entry in entries:
        image, grayscale = _decode(archive, entry.info, name, limits)
        if size is None:
            size = _capped_size(image.size, limits.max_image_side)
        if image.size != size:
            image = image.resize(size, Image.Resampling.BILINEAR)
        pixels.append(np.asarray(image, dtype=np.uint8))
        all_grayscale = all_grayscale and grayscale

    stacked = np.stack(pixels)  # (n, H, W, 3)
    if all_grayscale:
        stacked = stacked[..., :1]
    return stacked.transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def _decode(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, limits: Limits) -> tuple[Image.Image, bool]:
    """Decode one entry to RGB. Also returns whether the source image was grayscale."""
    try:
        data = archive.read(info)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DatasetError(gettext_noop("%(file)s, entry '%(entry)s': cannot be read (%(error)s)"),
                           code="unreadable", file=name, entry=info.filename, error=str(exc)) from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > limits.max_image_pixels:
                raise DatasetError(
                    gettext_noop("%(file)s, entry '%(entry)s': the image is %(width)d×%(height)d pixels, more than "
                                 "the limit of %(limit)d pixels"),
                    code="image_too_large", file=name, entry=info.filename, width=width, height=height,
                    limit=limits.max_image_pixels,
                )
            grayscale = image.mode in GRAYSCALE_MODES
            source = image.convert("L") if grayscale else image
            return source.convert("RGB"), grayscale
    except DatasetError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError(gettext_noop("%(file)s, entry '%(entry)s': not a decodable image (%(error)s)"),
                           code="bad_image", file=name, entry=info.filename, error=_short_error(exc)) from None


def _capped_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _short_error(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:120] + "…"


def _preview(entries: list[ImageEntry], class_names: list[str]) -> list[dict]:
    by_class: dict[str, list[str]] = {class_name: [] for class_name in class_names}
    for entry in entries:
        listed = by_class[entry.class_name]
        if len(listed) < PREVIEW_ENTRIES:
            listed.append(entry.info.filename)
    return [{"class": class_name, "entries": listed} for class_name, listed in by_class.items()]
