"""Find the images of a dataset that cannot be decoded, before training, in parallel, cached.

A truncated or zero-byte file in an image folder used to stop a run at whatever step first drew
it, or in the final evaluation, after the work was done. :func:`check_images` decodes every
image of a split once, up front, and either refuses the split with a list of the bad files or
(``skip_bad=True``) drops them, logging each.

What counts as decodable: PIL's ``verify()`` (chunk structure and CRCs) *and* a full ``load()``
of the pixels, with ``ImageFile.LOAD_TRUNCATED_IMAGES`` forced off during the check. Measured on
the emoji PNGs: a PNG cut inside its pixel data fails both; one cut after the pixel data (its
``IEND`` chunk lost) loads but fails ``verify()``; a flipped byte fails ``verify()`` 30 times in
30 and ``load()`` only 27 times; a truncated JPEG passes ``verify()`` (it checks little) and
fails ``load()``; with ``LOAD_TRUNCATED_IMAGES`` on, ``load()`` pads a truncated image with grey
and passes, which is why it is forced off here. Both together cost about as much as ``load()``
alone (the file is read once into the OS cache).

The cache is a small JSON file per data source under the ``datasets`` cache directory
(``--cache_dir``, else ``HF_DATASETS_CACHE``), ``hfssl_image_checks/<hash of the source>.json``,
rather than ``datasets``' fingerprint cache: an entry is keyed by the file itself (absolute path,
size and modification time; in-memory bytes by their BLAKE2 digest), so a file replaced to fix
it is checked again while the others are not, the same entries serve another
``--max_train_samples`` or split, and validity does not depend on whether ``datasets`` noticed a
change on disk. The data directory itself is never written to (it may be read-only or shared).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import multiprocessing
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional, Union

import datasets
from PIL import Image as PILImage
from PIL import ImageFile

logger = logging.getLogger(__name__)

CACHE_VERSION = 2
CACHE_FOLDER = "hfssl_image_checks"
# Below this many unchecked images a pool's start-up costs more than it saves.
PARALLEL_MIN_IMAGES = 256
CHUNK_SIZE = 64
# How many bad files an error message lists by name.
SHOWN_BAD_IMAGES = 5
READ_BATCH_SIZE = 1024
# Images decoded per round: bounds the in-memory bytes of Hub splits held at once.
DECODE_WINDOW = 8192

# A file to decode (its path) or in-memory bytes.
_Source = Union[str, bytes]


@dataclass(frozen=True)
class BadImage:
    """One image that cannot be decoded: its row in the split, its name (path or row), and why."""

    row: int
    name: str
    error: str


@dataclass
class _Item:
    """One image to check: its row, the name to report, what to decode and its cache key."""

    row: int
    name: str
    source: _Source
    key: str
    stamp: Optional[list]  # [size, mtime_ns] of a file; None for bytes


def image_error(source: _Source) -> Optional[str]:
    """None when ``source`` (a file path or encoded bytes) decodes fully, else why it does not.

    Runs ``verify()`` and then a full ``load()`` on a fresh handle (``verify()`` leaves the image
    unusable); ``ImageFile.LOAD_TRUNCATED_IMAGES`` should be off (see :func:`strict_decoding`).
    """
    if isinstance(source, str) and os.path.isfile(source) and os.path.getsize(source) == 0:
        return "empty file (0 bytes)"
    try:
        for step in ("verify", "load"):
            with PILImage.open(_open_source(source)) as image:
                getattr(image, step)()
    except Exception as error:  # noqa: BLE001 - any failure to decode marks the image bad; the reason is reported
        return f"{type(error).__name__}: {error}"
    return None


def _open_source(source: _Source):
    return io.BytesIO(source) if isinstance(source, bytes) else source


def _errors_of(sources: Sequence[_Source]) -> list[Optional[str]]:
    """:func:`image_error` of each source (one task of a pool: a chunk, to amortise the hand-over)."""
    return [image_error(source) for source in sources]


@contextlib.contextmanager
def strict_decoding() -> Iterator[None]:
    """``ImageFile.LOAD_TRUNCATED_IMAGES`` off for the duration (restored after): a truncated image
    must fail the check even where the user turned truncated loading on. Forked workers inherit it."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def num_check_workers() -> int:
    """The cores this process may use (its CPU affinity where the platform reports it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _executor(num_workers: int) -> Executor:
    """Processes forked from this one (decoding is Python-bound, so threads share one core); threads
    where fork is unavailable (a spawned worker would re-import torch and transformers first)."""
    if "fork" in multiprocessing.get_all_start_methods():
        return ProcessPoolExecutor(num_workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(num_workers)


def decode_errors(sources: Sequence[_Source], num_workers: Optional[int] = None) -> list[Optional[str]]:
    """:func:`image_error` of every source, in order; in a pool of ``num_workers`` (default: the
    cores) when there are at least :data:`PARALLEL_MIN_IMAGES`."""
    num_workers = num_workers or num_check_workers()
    with strict_decoding():
        if num_workers == 1 or len(sources) < PARALLEL_MIN_IMAGES:
            return _errors_of(sources)
        chunks = [sources[start : start + CHUNK_SIZE] for start in range(0, len(sources), CHUNK_SIZE)]
        with _executor(num_workers) as pool:
            return [error for errors in pool.map(_errors_of, chunks) for error in errors]


# ----------------------------------------------------------------------------- the cache


def cache_path(source_description: str, cache_dir: Optional[str]) -> str:
    """The cache file of one data source (its description names its directories or Hub id)."""
    root = cache_dir or datasets.config.HF_DATASETS_CACHE
    digest = hashlib.sha256(source_description.encode()).hexdigest()[:16]
    return os.path.join(os.path.expanduser(str(root)), CACHE_FOLDER, f"{digest}.json")


def _read_cache(path: str) -> dict:
    """The cached results, ``{"files": {path: [size, mtime_ns, ctime_ns, inode, error]}, "bytes": {digest: error}}``;
    an unreadable or outdated cache counts as empty (it is only ever a shortcut)."""
    try:
        with open(path) as handle:
            cache = json.load(handle)
    except (OSError, ValueError):
        return {"files": {}, "bytes": {}}
    if not isinstance(cache, dict) or cache.get("version") != CACHE_VERSION:
        return {"files": {}, "bytes": {}}
    return {"files": dict(cache.get("files", {})), "bytes": dict(cache.get("bytes", {}))}


def _write_cache(path: str, cache: dict) -> None:
    """Write atomically (a temporary file renamed over the old one), so that concurrent runs never
    read half a file; a cache that cannot be written only costs the next run a check."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(path), suffix=".tmp", delete=False) as handle:
            json.dump({"version": CACHE_VERSION, **cache}, handle)
        os.replace(handle.name, path)
    except OSError as error:
        logger.warning("Could not write the image-check cache %s (%s); the next run checks again.", path, error)


def _cached_error(item: _Item, cache: dict) -> tuple[bool, Optional[str]]:
    """(found, error) of ``item`` in ``cache``."""
    if item.stamp is None:
        return (True, cache["bytes"][item.key]) if item.key in cache["bytes"] else (False, None)
    entry = cache["files"].get(item.key)
    if entry is not None and entry[:-1] == item.stamp:
        return True, entry[-1]
    return False, None


def _remember(item: _Item, error: Optional[str], cache: dict) -> None:
    if item.stamp is None:
        cache["bytes"][item.key] = error
    else:
        cache["files"][item.key] = [*item.stamp, error]


# ----------------------------------------------------------------------------- rows to items


def _item(row: int, value: dict) -> _Item:
    """What to decode for one ``{"bytes", "path"}`` value: the bytes when present (as the collator
    does), else the file; a missing file gets a stamp that matches no cache entry."""
    path = value.get("path")
    if value.get("bytes") is not None:
        data = value["bytes"]
        name = path or f"row {row} (in-memory bytes)"
        return _Item(row, name, data, hashlib.blake2b(data, digest_size=16).hexdigest(), None)
    if path is None:
        return _Item(row, f"row {row}", b"", f"row-{row}-without-data", None)
    path = os.path.abspath(path)
    try:
        stat = os.stat(path)
        # ctime and inode too: a copy that keeps size and mtime (cp -p, rsync -a, tar) still gets a new ctime
        stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
    except OSError:
        stamp = [-1, -1, -1, -1]
    return _Item(row, path, path, path, stamp)


def _items(dataset: datasets.Dataset) -> Iterator[_Item]:
    """The image values of ``dataset`` (undecoded), read in batches."""
    images = dataset.select_columns(["image"]).cast_column("image", datasets.Image(decode=False))
    row = 0
    for batch in images.iter(batch_size=READ_BATCH_SIZE):
        for value in batch["image"]:
            yield _item(row, value)
            row += 1


def find_bad_images(
    dataset: datasets.Dataset, cache_file: Optional[str], num_workers: Optional[int] = None
) -> list[BadImage]:
    """The rows of ``dataset`` (an ``Image`` column named "image") whose image does not decode.

    Images already checked in ``cache_file`` (same file, same size and modification time; same
    bytes) are not decoded again; the others are decoded in parallel and added to the cache."""
    cache = _read_cache(cache_file) if cache_file else {"files": {}, "bytes": {}}
    bad, window, checked = [], [], 0

    def decode_window() -> None:  # in windows, so that in-memory image bytes are held a window at a time
        for item, error in zip(window, decode_errors([item.source for item in window], num_workers)):
            _remember(item, error, cache)
            if error is not None:
                bad.append(BadImage(item.row, item.name, error))
        window.clear()

    for item in _items(dataset):
        found, error = _cached_error(item, cache)
        if not found:
            if not checked:
                logger.info("Checking that the images of a %d-row split decode before training.", len(dataset))
            checked += 1
            window.append(item)
            if len(window) >= DECODE_WINDOW:
                decode_window()
        elif error is not None:
            bad.append(BadImage(item.row, item.name, error))
    if window:
        decode_window()
    if checked:
        logger.info("Decoded %d images (%d more known from the cache).", checked, len(dataset) - checked)
        if cache_file:
            _write_cache(cache_file, cache)
    return sorted(bad, key=lambda image: image.row)


# ----------------------------------------------------------------------------- refuse or skip


def check_images(
    splits: dict[str, Optional[datasets.Dataset]],
    source_description: str,
    cache_file: Optional[str],
    skip_bad: bool,
) -> tuple[dict[str, Optional[datasets.Dataset]], list[str]]:
    """``splits`` (name -> dataset or None) once every image in them decodes, and the files dropped.

    Only splits whose "image" column is a ``datasets.Image`` are checked. When some image does not
    decode: with ``skip_bad``, its row is dropped and its file logged and returned; without, a
    ``ValueError`` lists the bad files of every split (the first :data:`SHOWN_BAD_IMAGES` and a
    count) and the fix, so that one pass over the data finds them all."""
    bad = {
        split: find_bad_images(dataset, cache_file)
        for split, dataset in splits.items()
        if dataset is not None and isinstance(dataset.features.get("image"), datasets.Image)
    }
    bad = {split: images for split, images in bad.items() if images}
    if bad and not skip_bad:
        raise ValueError(_bad_images_message(bad, splits, source_description))
    kept, skipped = dict(splits), []
    for split, images in bad.items():
        kept[split] = _without(splits[split], images, split, source_description)
        skipped.extend(image.name for image in images)
    return kept, skipped


def _without(dataset: datasets.Dataset, bad: list[BadImage], split: str, source_description: str) -> datasets.Dataset:
    """``dataset`` without the rows of ``bad``, each logged."""
    for image in bad:
        logger.warning("Skipping %s image %s: it cannot be decoded (%s).", split, image.name, image.error)
    logger.warning(
        "Skipped %d of %d %s images of %s that cannot be decoded (--skip_bad_images).",
        len(bad),
        len(dataset),
        split,
        source_description,
    )
    bad_rows = {image.row for image in bad}
    return dataset.select([row for row in range(len(dataset)) if row not in bad_rows])


def _bad_images_message(
    bad: dict[str, list[BadImage]], splits: dict[str, Optional[datasets.Dataset]], source_description: str
) -> str:
    everything = [image for images in bad.values() for image in images]
    shown = "; ".join(f"{image.name} ({image.error})" for image in everything[:SHOWN_BAD_IMAGES])
    more = f"; and {len(everything) - SHOWN_BAD_IMAGES} more" if len(everything) > SHOWN_BAD_IMAGES else ""
    counts = " and ".join(f"{len(images)} of {len(splits[split])} {split}" for split, images in bad.items())
    return (
        f"{counts} images of {source_description} cannot be decoded (checked before training): {shown}{more}. "
        "Delete or replace these files (e.g. export them again from the original), or pass --skip_bad_images to "
        "train without them (each skipped file is logged, and their count is recorded as skipped_images in "
        "all_results.json)."
    )
