"""Name the file, the line and the fix when a local text file cannot be read.

``datasets`` reports an empty file, a broken JSON line, a CSV row with a stray separator or bytes
that are not UTF-8 as a generic ``DatasetGenerationError`` (or, for an empty ``.jsonl``, a bare
``StopIteration``; for Latin-1 bytes in a ``.jsonl``, a ``UnicodeDecodeError`` later, when the
text is first read). :func:`find_text_file_problem` reads the file once, line by line, and says
what is wrong and where: the first line that is not UTF-8 (with its bytes), the first JSON line
that does not parse, the first CSV row with more fields than the header, or that the
file is empty.

:mod:`hfssl.data.text` runs it only when loading failed (a file that loads costs nothing more),
and up front for ``--streaming`` (its first lines), where the error would otherwise come at some training step.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import itertools
import json
import lzma
import os
from collections.abc import Iterator
from typing import BinaryIO, Optional

OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
# How much of an offending line an error message quotes.
QUOTED_CHARS = 80


def open_binary(path: str) -> BinaryIO:
    """``path`` opened for reading bytes, decompressed by its extension (.gz, .bz2, .xz)."""
    opener = OPENERS.get(os.path.splitext(path)[1].lower(), open)
    return opener(path, "rb")


def find_text_file_problem(
    path: str, flag: str, builder: str, builder_kwargs: dict, max_lines: Optional[int] = None
) -> Optional[str]:
    """What makes ``path`` (passed as ``flag``) unreadable by the ``datasets`` ``builder`` ("text",
    "json" or "csv", with its ``builder_kwargs``), with the line and the fix; None when nothing is found.
    ``max_lines``: read only that many lines (a streamed file is checked at its start only)."""
    with open_binary(path) as handle:
        lines = _numbered_utf8_lines(handle, path, flag)
        if max_lines is not None:
            lines = itertools.islice(lines, max_lines)
        try:
            first = next(lines, None)
            if first is None:
                return f"{flag} {path} is empty (no bytes{' after decompression' if _compressed(path) else ''}). " + (
                    f"Pass a file with text, or leave out {flag}."
                )
            lines = _chain(first, lines)
            if builder == "json":
                return _json_problem(lines, path, flag)
            if builder == "csv":
                return _csv_problem(lines, path, flag, builder_kwargs.get("sep", ","))
            for _ in lines:  # a .txt file: only its encoding can be wrong
                pass
        except _Utf8Problem as problem:
            return str(problem)
    return None


class _Utf8Problem(Exception):
    """A line that is not UTF-8; its message is the user-facing one."""


def _compressed(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in OPENERS


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def _numbered_utf8_lines(handle: BinaryIO, path: str, flag: str) -> Iterator[tuple[int, str]]:
    """(line number from 1, text) of each line; raises :class:`_Utf8Problem` at the first that is not UTF-8."""
    for number, raw in enumerate(handle, start=1):
        try:  # a byte-order mark is UTF-8 too, and datasets' readers accept it
            yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise _Utf8Problem(_encoding_message(path, flag, number, raw, error)) from error


def _encoding_message(path: str, flag: str, number: int, raw: bytes, error: UnicodeDecodeError) -> str:
    bad = raw[error.start : min(error.end, error.start + 4)]
    context = raw[max(0, error.start - 20) : error.start + 20].decode("utf-8", errors="replace")
    command = f"iconv -f latin1 -t utf-8 {path} > {path}.utf8"
    if _compressed(path):
        opener = {".gz": "zcat", ".bz2": "bzcat", ".xz": "xzcat"}[os.path.splitext(path)[1].lower()]
        command = f"{opener} {path} | iconv -f latin1 -t utf-8 > {os.path.splitext(path)[0]}.utf8"
    return (
        f"{flag} {path} is not UTF-8: line {number}, byte {error.start + 1} is {bad!r} (near {context.strip()!r}). "
        f"Re-encode the file as UTF-8, e.g. `{command}` if it is Latin-1 (`file -i` guesses the encoding), "
        f"or repair or drop line {number}."
    )


def _json_problem(lines: Iterator[tuple[int, str]], path: str, flag: str) -> Optional[str]:
    """JSON Lines (one object a line) unless the document starts with "[" (one JSON array)."""
    leading = []
    first = next(lines, None)
    while first is not None and not first[1].strip():
        leading.append(first[1])
        first = next(lines, None)
    if first is None:
        return None  # whitespace only: datasets reads no rows, and load_text_datasets says so
    if first[1].lstrip().startswith("["):
        return _json_document_problem("".join([*leading, first[1], *(text for _, text in lines)]), path, flag)
    for number, text in _chain(first, lines):
        if not text.strip():
            continue
        try:
            json.loads(text.rstrip("\r\n"))
        except json.JSONDecodeError as error:
            quoted = text.strip()[:QUOTED_CHARS]
            return (
                f"{flag} {path}: line {number} is not valid JSON ({error.msg} at column {error.colno}): {quoted!r}. "
                f"Repair or drop line {number} (e.g. `sed -i '{number}d' {path}` on an uncompressed file)."
            )
    return None


def _json_document_problem(document: str, path: str, flag: str) -> Optional[str]:
    """The problem of a whole-file JSON document, with the line of the file where it is."""
    try:
        json.loads(document)
    except json.JSONDecodeError as error:
        return (
            f"{flag} {path} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}. "
            f"Repair line {error.lineno}, or write the file as JSON Lines (one object a line)."
        )
    return None


def _csv_problem(lines: Iterator[tuple[int, str]], path: str, flag: str, separator: str) -> Optional[str]:
    """The first row with more fields than the header (pandas, which datasets reads CSV with, fills
    short rows and accepts loose quotes, but refuses these), or a row the csv module cannot read."""
    reader = csv.reader((text for _, text in lines), delimiter=separator)
    header, start = None, 1
    try:
        for row in reader:
            if header is None:
                header = row
            elif len(row) > len(header):
                return (
                    f"{flag} {path}: line {start} has {len(row)} fields where the header has {len(header)} "
                    f"({separator!r}-separated). Quote the fields that contain {separator!r}, or repair or drop line "
                    f"{start}."
                )
            start = reader.line_num + 1  # a quoted field may span lines: the next row starts here
    except csv.Error as error:
        return (
            f"{flag} {path}: the row starting at line {start} cannot be parsed as CSV ({error}; a quote opened there "
            f"may never be closed). Close or escape the quote, or repair or drop line {start}."
        )
    return None
