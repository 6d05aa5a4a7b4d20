"""Label and AU normalisation shared by the sources: strict checks for annotations, careful parsing for free text."""

from __future__ import annotations

import re
from collections.abc import Sequence

from facial_r1.data.sources.base import SampleError
from facial_r1.facs import ACTION_UNITS, normalize_au, normalize_emotion, sort_aus

_NEGATION = re.compile(
    r"\b(no|not|never|without|nor|absent|absence|lack|lacks|lacking)\b|n't\b", re.IGNORECASE
)
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
_AU_MENTION = re.compile(r"\bAU\s*0*(\d{1,3})\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+")


def vocab_codes(vocab: Sequence[int | str], path: str | None = None, line: int | None = None) -> list[str]:
    """``(1, 2, "AU04")`` -> ``["AU1", "AU2", "AU4"]``; an unknown AU raises ``unknown_au``."""
    return check_aus(list(vocab), None, path, line)


def check_aus(
    tokens: Sequence[int | str], vocab: Sequence[str] | None, path: str | None = None, line: int | None = None
) -> list[str]:
    """Canonical, sorted AU codes; an unknown token or one outside ``vocab`` (when given) raises ``unknown_au``."""
    codes = []
    for token in tokens:
        if isinstance(token, bool):  # True == 1 in Python: it would silently read as AU1
            raise SampleError(
                "unknown_au", f'AU {token!r} is a boolean; write AU numbers (4) or codes ("AU4")', path, line
            )
        code = normalize_au(token) if isinstance(token, int | str) else None
        if code is None:
            raise SampleError("unknown_au", f"unknown AU {token!r}", path, line)
        if vocab is not None and code not in vocab:
            raise SampleError(
                "unknown_au", f"{code} is outside this dataset's AU vocabulary {list(vocab)}", path, line
            )
        codes.append(code)
    return sort_aus(codes)


def check_label_set(words: Sequence[str], path: str | None = None, line: int | None = None) -> list[str]:
    """Normalised label set, in the given order; an unknown word raises ``unknown_label``."""
    labels = []
    for word in words:
        label = normalize_emotion(word) if isinstance(word, str) else None
        if label is None:
            raise SampleError("unknown_label", f"unknown emotion {word!r} in label set", path, line)
        if label not in labels:
            labels.append(label)
    return labels


def check_labels(
    words: Sequence[str], label_set: Sequence[str], path: str | None = None, line: int | None = None
) -> list[str]:
    """Normalised gold labels; a word that is not an emotion of ``label_set`` raises ``unknown_label``."""
    labels = []
    for word in words:
        label = normalize_emotion(word, label_set) if isinstance(word, str) else None
        if label is None:
            raise SampleError(
                "unknown_label", f"unknown emotion {word!r} (label set {list(label_set)})", path, line
            )
        labels.append(label)
    return labels


def affirmed_sentences(text: str) -> list[str]:
    """Sentences of ``text`` without negation words (EmoLA drops negated sentences before matching labels)."""
    return [s for s in _SENTENCE.split(text) if s.strip() and not _NEGATION.search(s)]


def aus_in_text(text: str) -> list[str]:
    """AUs a free-text answer affirms: ``AU<n>`` mentions, else FACS names ("lip corner puller"), never negated."""
    sentences = affirmed_sentences(text)
    numbers = {int(m) for s in sentences for m in _AU_MENTION.findall(s)}
    if not numbers:
        lowered = " ".join(sentences).lower()
        numbers = {n for n, au in ACTION_UNITS.items() if re.search(rf"\b{re.escape(au.name)}\b", lowered)}
    return sort_aus(code for n in numbers if (code := normalize_au(n)))


def emotion_in_text(text: str, label_set: Sequence[str]) -> str | None:
    """The one emotion of ``label_set`` an answer affirms (synonyms allowed), or None if none or several."""
    found = {
        label
        for sentence in affirmed_sentences(text)
        for word in _WORD.findall(sentence.lower())
        if (label := normalize_emotion(word, label_set))
    }
    return found.pop() if len(found) == 1 else None
