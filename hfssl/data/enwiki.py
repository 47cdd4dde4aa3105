"""``builtin:enwiki-sample``: the English Wikipedia sample shipped in gensim's test data, as plain text.

gensim's wheel carries a shortened dump of 206 pages (:data:`ENWIKI_SAMPLE_FILE`): 106 articles,
99 redirects and 1 page outside the article namespace. The articles are available offline, which
makes them the text resolver's built-in corpus. Pages come from gensim's ``extract_pages``, markup
is removed by its ``filter_wiki`` and then by :func:`wiki_to_plain_text`, and the parsed articles
are cached on disk by ``datasets`` (:func:`enwiki_sample_dataset`).
"""

import bz2
import functools
import hashlib
import logging
import os
import re
import time
from typing import Optional

import datasets

logger = logging.getLogger(__name__)

ENWIKI_SAMPLE_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
ENWIKI_SAMPLE_ABOUT = "106 English Wikipedia articles from gensim's test data, wiki markup removed (offline)"

# Cleanup after gensim's filter_wiki, which leaves section headings, bold/italic quotes, list bullets,
# gallery file names and magic words in place.
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1$")
_EMPHASIS = re.compile(r"'{2,}")
_LIST_MARKER = re.compile(r"^[*#:;]+\s*")
_GALLERY_FILE = re.compile(r"\b(?:File|Image):[^|\n]*\|")
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
_SPACES = re.compile(r"[^\S\n]+")


# Bump when the parsing below changes what it returns: it keys the on-disk cache of the parsed articles.
_ENWIKI_PARSER_VERSION = 1
_ENWIKI_FEATURES = datasets.Features({"title": datasets.Value("string"), "text": datasets.Value("string")})


def enwiki_sample_dataset(cache_dir: Optional[str] = None) -> datasets.Dataset:
    """gensim's Wikipedia sample as a ``Dataset`` with "title" and "text" columns (see ``enwiki_sample_rows``).

    Parsing takes about 2 s on 2 cores, so the result is cached by ``datasets`` (in ``cache_dir``,
    default the ``datasets`` cache) under a key made of the parser version, the gensim version and
    the dump's size; a later call, in this process or another, reads it back in milliseconds.
    """
    import gensim

    path = _enwiki_sample_path()
    key = f"enwiki-sample|parser={_ENWIKI_PARSER_VERSION}|gensim={gensim.__version__}|size={os.path.getsize(path)}"
    return datasets.Dataset.from_generator(
        _generate_enwiki_rows,
        features=_ENWIKI_FEATURES,
        cache_dir=cache_dir,
        fingerprint=hashlib.sha256(key.encode()).hexdigest()[:16],
    )


def _generate_enwiki_rows():
    yield from enwiki_sample_rows()


def _enwiki_sample_path() -> str:
    """Where gensim's wheel keeps the dump (``gensim.test.utils.datapath``, without importing that module:
    it builds test corpora on import)."""
    import gensim

    path = os.path.join(os.path.dirname(gensim.__file__), "test", "test_data", ENWIKI_SAMPLE_FILE)
    if not os.path.isfile(path):
        raise ValueError(
            f"gensim's Wikipedia sample {ENWIKI_SAMPLE_FILE} is missing from {os.path.dirname(path)}; "
            "reinstall gensim (its wheel ships the file) or pass --train_file/--dataset_name instead."
        )
    return path


@functools.lru_cache(maxsize=1)
def enwiki_sample_rows() -> tuple[dict, ...]:
    """The articles of gensim's Wikipedia sample as ``{"title", "text"}`` rows, markup removed; parsed once a process.

    The dump (``gensim.test.utils.datapath(ENWIKI_SAMPLE_FILE)``) holds 206 pages: 106 articles,
    99 redirects and 1 page outside the article namespace (both skipped, with a logged count).
    Pages come from ``gensim.corpora.wikicorpus.extract_pages`` (article namespace only), text
    from its ``filter_wiki`` (links, templates, references, tables, tags), then
    ``wiki_to_plain_text`` removes what ``filter_wiki`` leaves.
    """
    from gensim.corpora.wikicorpus import extract_pages

    start = time.perf_counter()
    rows, redirects, empty = [], 0, 0
    with bz2.open(_enwiki_sample_path(), "rb") as dump:
        for title, raw, _ in extract_pages(dump, filter_namespaces=("0",)):
            if raw.lstrip()[:9].upper() == "#REDIRECT":
                redirects += 1
                continue
            text = wiki_to_plain_text(raw)
            if not text:
                empty += 1
                continue
            rows.append({"title": title, "text": text})
    logger.info(
        "Parsed %d Wikipedia articles from gensim's %s in %.1f s; skipped %d redirects and %d empty or non-article pages.",
        len(rows),
        ENWIKI_SAMPLE_FILE,
        time.perf_counter() - start,
        redirects,
        empty,
    )
    return tuple(rows)


def wiki_to_plain_text(raw: str) -> str:
    """MediaWiki markup to plain text: gensim's ``filter_wiki``, then headings, quotes, bullets and spaces.

    Paragraphs are kept, separated by ``"\\n\\n"``; the lines inside a paragraph (list items
    included) are joined with a space, so the text holds no other newline. A section heading
    becomes a paragraph of its own (its title without the ``==``).
    """
    from gensim.corpora.wikicorpus import filter_wiki

    text = _GALLERY_FILE.sub("", _EMPHASIS.sub("", _MAGIC_WORD.sub("", filter_wiki(raw))))
    paragraphs: list[str] = []
    lines: list[str] = []
    for line in text.split("\n"):
        line = _SPACES.sub(" ", line).strip()
        heading = _HEADING.match(line)
        if heading or not line:
            if lines:
                paragraphs.append(" ".join(lines))
                lines = []
            if heading and heading.group(2):
                paragraphs.append(heading.group(2))
            continue
        line = _LIST_MARKER.sub("", line)
        if line:
            lines.append(line)
    if lines:
        paragraphs.append(" ".join(lines))
    return "\n\n".join(paragraphs)
