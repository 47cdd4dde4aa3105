"""Sentence splitting for the text methods that need sentences (BERT's next-sentence pairs, BART's
sentence permutation), with `sentencex` (Wikimedia's rule-based splitter, compiled, about 250
languages; it handles abbreviations such as "Mr." and "p.m.").

Paragraphs (blocks separated by a blank line) are split first, so a sentence never spans two
paragraphs; whitespace-only pieces are dropped and each sentence is stripped.
"""

from __future__ import annotations

import re

from sentencex import segment

PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def segment_sentences(text: str, language: str = "en") -> list[str]:
    """The sentences of a document, in order, stripped; ``[]`` for an empty or blank document.

    ``language`` is an ISO 639 code (sentencex falls back to related languages, then English)."""
    sentences = []
    for paragraph in PARAGRAPH_BREAK.split(text):
        if paragraph.strip():
            sentences.extend(piece.strip() for piece in segment(language, paragraph) if piece.strip())
    return sentences
