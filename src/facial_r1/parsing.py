"""The one parser of model outputs: rewards, evaluation and synthesis all read completions through :func:`parse`.

A completion is expected to look like ``<think>reasoning</think><answer>emotion</answer>``. Rules, in one place:

* **Tags** are the exact lowercase tokens ``<think>``, ``</think>``, ``<answer>``, ``</answer>``.
* **Strict format**: the whole string is ``<think>T</think>``, optional whitespace, ``<answer>A</answer>`` and nothing
  else: no text or whitespace outside (as in the published code), exactly these four tags (no nested or repeated
  tags), and T and A not blank (an empty reasoning must not earn the format reward).
* **Lenient format**: the blocks may sit anywhere. ``think`` is the first ``<think>`` up to the first ``</think>``
  after it (the first reasoning is the one written before any answer); ``answer`` is the last ``<answer>`` that is
  closed, up to its closing tag (a model that corrects itself is judged on its final word). Lenient format holds
  when both exist, are not blank, and the answer opens after the think block closes. An unclosed block is missing.
* **AUs** (from the think text by default): ``AU12``, ``AU 12``, ``au12``, ``AU012``, ``AU-12`` and, with
  ``map_au_names``, FACS names as written ("lip corner puller" -> AU12). Numbers outside ``facs.ACTION_UNITS`` are
  ignored and listed in ``unknown_aus``.
* **Negation** (``drop_negated=True``): a mention is dropped when its clause, up to the mention, holds a negation
  cue ("no", "not", "without", "neither/nor", "absence of", "lack of", "n't", "rather than", "instead of", ...), or
  when it is directly followed by "is not", "are absent", "(AU4) is missing", ... A clause starts after ``. , ; : ! ?``,
  a line break, or "and / but / while / whereas / although / though / however / yet / so". Known limits: "no AU1,
  AU2" keeps AU2 and "no AU1 and AU2" keeps AU2 (the clause ends at the comma / "and"); the prompt forbids negations,
  so these only matter for robustness. ``drop_negated=False`` counts every mention, like the published code.
* **Emotion** of the answer: ``facs.normalize_emotion(answer, label_set)`` - the whole answer must be one label of
  the sample's closed set (case, punctuation and synonyms aside); several labels or an outside label give None.
* **Concluded emotion** of the reasoning: the last emotion word or synonym in the think text that belongs to the
  label set and is not negated ("not sadness but happiness" -> happiness; "happiness rather than sadness" ->
  happiness). None when the reasoning names none.

Affect outputs (only the affect prompts ask for them; other completions simply have none):

* **AU intensity** (from the same text as the AUs): a parenthesised mention ``(AU12, D)``: the AU code, a comma,
  colon or semicolon, an optional word "intensity", then one FACS letter A-E or a level 1-5, then ``)``. Spacing and
  case are free ("( au 12 : d )"). A value that is not exactly one letter A-E or one digit 1-5 ("F", "0", "7",
  "strong") is a parse failure for that AU, listed in ``intensity_errors`` and never in ``au_intensities``; so are
  two different levels for one AU. A value that is another AU code ("(AU6, AU12)") is no intensity. Intensities
  are kept only for AUs the reasoning affirms (in ``aus``).
* **Valence/arousal**: the last closed ``<va>...</va>`` block (tags case-insensitive, spaces inside a tag allowed)
  holding two numbers separated by a comma, semicolon or spaces, optionally named ("valence: 0.4, arousal -0.2").
  Both must lie in [-1, 1]; anything else (a missing number, text, 1.5, "nan") sets ``va=None`` and ``va_error``
  (``"malformed"`` / ``"out_of_range"``); no block at all is ``va=None, va_error=None``.
* **Strict format with V/A** (``format_strict_va``): ``<think>T</think>``, optional whitespace, ``<answer>A</answer>``,
  optional whitespace, ``<va>V</va>`` and nothing else, exactly these six tags (lowercase), and a valid V. The
  plain strict format stays as it was: a completion with a ``<va>`` block is not ``format_strict``. Lenient with
  V/A: lenient format plus a valid block opening after the answer block.
* **Compound** of the answer: ``affect.normalize_compound`` - one of RAF-DB's 11 compound classes, written as
  "happily surprised" (case, hyphens aside), reversed-adverb-free pairs like "happiness and surprise" accepted;
  ``answer_emotions`` holds the basic emotions the answer names (one or two), for partial credit.

Every function here is total (never raises on a ``str``) and linear-time: tags, mentions, clause boundaries and
cues are each found by one pass of a precompiled pattern without nested quantifiers, and clause look-ups use
binary search.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

from facial_r1.affect import INTENSITY_LETTERS, answer_components, normalize_compound
from facial_r1.facs import ACTION_UNITS, EMOTION_SYNONYMS, normalize_emotion, sort_aus

THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE = "<think>", "</think>", "<answer>", "</answer>"

_TAG = re.compile(r"</?(?:think|answer)>")
# At most 3 significant digits: a longer run is not an AU (and int() of a huge digit run would raise). A letter
# or digit right after the number makes it part of another word ("AU12x").
_AU_CODE = re.compile(r"\bAU[ \-]?0*([0-9]{1,3})(?![^\W_])", re.IGNORECASE)
_AU_NAME_TO_NUMBER = {au.name: n for n, au in ACTION_UNITS.items()}
_AU_NAME = re.compile(
    r"\b(?:"
    + "|".join(
        r"[\s-]+".join(map(re.escape, name.split()))
        for name in sorted(_AU_NAME_TO_NUMBER, key=len, reverse=True)
    )
    + r")\b",
    re.IGNORECASE,
)
_EMOTION_WORD = re.compile(
    r"\b(?:"
    + "|".join(
        map(re.escape, sorted({s for syns in EMOTION_SYNONYMS.values() for s in syns}, key=len, reverse=True))
    )
    + r")\b",
    re.IGNORECASE,
)
_CLAUSE_BOUNDARY = re.compile(
    r"[.,;:!?\n]|\b(?:and|but|while|whereas|although|though|however|yet|so)\b", re.IGNORECASE
)
_NEGATION_CUE = re.compile(
    r"\b(?:no|not(?!\s+only\b)|without|never|neither|nor|none|absence|absent|lack|lacks|lacking|lacked|cannot"
    r"|rather\s+than|instead\s+of|as\s+opposed\s+to|unlike|except|excluding|other\s+than)\b|n['’]t\b",
    re.IGNORECASE,
)
_POST_NEGATION = re.compile(
    r"\s*\)?\s*(?:(?:is|are|was|were|remains?|appears?|seems?)\s+(?:not\b(?!\s+only\b)|absent\b|inactive\b|missing\b)"
    r"|(?:is|are|was|were)n['’]t\b|absent\b|inactive\b|missing\b)",
    re.IGNORECASE,
)
_POST_WINDOW = 40  # characters after a mention searched for "is not" / "absent"; keeps the work bounded
# "(AU12, D)": the value is at most 12 characters, so a failed match never scans far.
_AU_INTENSITY = re.compile(
    r"\bAU[ \-]?0*([0-9]{1,3})\s*[,:;]\s*(?:intensity\s*)?([^\s,;:()]{1,12})\s*\)", re.IGNORECASE
)
_AU_LIKE = re.compile(r"^AU[ \-]?[0-9]+$", re.IGNORECASE)
_VA_TAG = re.compile(r"<\s*(/?)\s*va\s*>", re.IGNORECASE)
_NUMBER = r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
_VA_VALUES = re.compile(
    rf"\s*(?:valence\s*[:=]?\s*)?{_NUMBER}\s*(?:[,;]\s*|\s+)(?:arousal\s*[:=]?\s*)?{_NUMBER}\s*",
    re.IGNORECASE,
)
_LABEL_SPLIT = re.compile(r"[,;/|&+\n]|\b(?:or|and)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Parsed:
    """What a completion says, as every consumer reads it (see the module docstring for the rules)."""

    think: str | None  # lenient think text (first block), None if there is no closed block
    answer: str | None  # lenient answer text (last closed block), None if there is none
    format_strict: bool
    format_lenient: bool
    aus: list[str] = field(default_factory=list)  # canonical AU codes in numeric order ("AU1", "AU12")
    unknown_aus: list[str] = field(
        default_factory=list
    )  # mentioned numbers that are no FACS AU ("AU3", "AU99")
    emotion: str | None = None  # the answer normalised to the label set; None if not exactly one valid label
    concluded_emotion: str | None = (
        None  # last non-negated emotion word of the reasoning, within the label set
    )
    answer_labels_raw: list[str] = field(
        default_factory=list
    )  # the answer split on , ; / "or" "and" (stripped)
    # Affect outputs (module docstring): levels 1..5 of affirmed AUs, AUs whose stated level failed to parse,
    au_intensities: dict[str, int] = field(default_factory=dict)
    intensity_errors: list[str] = field(default_factory=list)
    # the (valence, arousal) of the last valid <va> block, why it failed ("malformed" / "out_of_range"),
    va: tuple[float, float] | None = None
    va_error: str | None = None
    format_strict_va: bool = False
    format_lenient_va: bool = False
    # and the answer read as a compound emotion (canonical name) and as the basic emotions it names.
    compound: str | None = None
    answer_emotions: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Blocks:
    think: str | None
    answer: str | None
    strict: bool
    lenient: bool
    answer_end: int | None = None  # end of the answer's closing tag
    strict_prefix: bool = False  # the strict rules hold up to the answer's closing tag (text may follow)


def _blocks(text: str) -> _Blocks:
    tags = [(m.group(), m.start(), m.end()) for m in _TAG.finditer(text)]
    opens_t = [(s, e) for t, s, e in tags if t == THINK_OPEN]
    closes_t = [s for t, s, _ in tags if t == THINK_CLOSE]
    opens_a = [(s, e) for t, s, e in tags if t == ANSWER_OPEN]
    closes_a = [s for t, s, _ in tags if t == ANSWER_CLOSE]

    think, think_end = None, None
    if opens_t:
        t_open_end = opens_t[0][1]
        i = bisect_left(closes_t, t_open_end)
        if i < len(closes_t):
            think, think_end = text[t_open_end : closes_t[i]], closes_t[i] + len(THINK_CLOSE)

    answer, answer_start, answer_end = None, None, None
    if closes_a:
        # The last opening tag that still has a closing tag after it; its block ends at the first such closing tag.
        j = bisect_right([e for _, e in opens_a], closes_a[-1]) - 1
        if j >= 0:
            a_start, a_end = opens_a[j]
            close = closes_a[bisect_left(closes_a, a_end)]
            answer, answer_start, answer_end = text[a_end:close], a_start, close + len(ANSWER_CLOSE)

    filled = think is not None and answer is not None and bool(think.strip()) and bool(answer.strip())
    lenient = filled and answer_start >= think_end
    strict_prefix = (
        filled
        and [t for t, _, _ in tags] == [THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE]
        and tags[0][1] == 0
        and not text[tags[1][2] : tags[2][1]].strip()
    )
    strict = strict_prefix and tags[3][2] == len(text)
    return _Blocks(think, answer, strict, lenient, answer_end, strict_prefix)


def extract_intensities(text: str, aus: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """Stated levels of the AUs in ``aus``: ({code: level 1..5}, [codes whose value failed]), see module docstring."""
    affirmed = set(aus)
    levels: dict[str, int] = {}
    failed: set[str] = set()
    for m in _AU_INTENSITY.finditer(text):
        code, value = f"AU{int(m.group(1))}", m.group(2)
        if code not in affirmed or _AU_LIKE.match(value):
            continue
        level = _intensity_level(value)
        if level is None or levels.get(code, level) != level:
            failed.add(code)
        else:
            levels[code] = level
    for code in failed:
        levels.pop(code, None)
    return {c: levels[c] for c in sort_aus(levels)}, sort_aus(failed)


def _intensity_level(value: str) -> int | None:
    if len(value) != 1:
        return None
    if value.upper() in INTENSITY_LETTERS:
        return INTENSITY_LETTERS.index(value.upper()) + 1
    return int(value) if value in "12345" else None


def _va_block(text: str, blocks: _Blocks) -> tuple[tuple[float, float] | None, str | None, bool, bool]:
    """(va, error, strict-with-va, lenient-with-va) of ``text`` (see module docstring)."""
    tags = [(m.group(1) == "/", m.start(), m.end()) for m in _VA_TAG.finditer(text)]
    closes = [s for closing, s, _ in tags if closing]
    opens = [(s, e) for closing, s, e in tags if not closing]
    if not closes:
        return None, None, False, False
    j = bisect_right([e for _, e in opens], closes[-1]) - 1
    if j < 0:
        return None, None, False, False
    start, content_start = opens[j]
    content_end = closes[bisect_left(closes, content_start)]
    va, error = read_va(text[content_start:content_end])
    lenient = (
        va is not None and blocks.lenient and blocks.answer_end is not None and start >= blocks.answer_end
    )
    strict = (
        va is not None
        and blocks.strict_prefix
        and len(tags) == 2
        and not text[blocks.answer_end : start].strip()
        and text[start:content_start] == "<va>"
        and text[content_end:] == "</va>"
    )
    return va, error, strict, lenient


def read_va(content: str) -> tuple[tuple[float, float] | None, str | None]:
    """``"0.4, -0.2"`` -> ((0.4, -0.2), None); malformed -> (None, "malformed"); outside [-1, 1] -> "out_of_range"."""
    m = _VA_VALUES.fullmatch(content)
    if m is None:
        return None, "malformed"
    v, a = float(m.group(1)), float(m.group(2))
    if not (-1.0 <= v <= 1.0 and -1.0 <= a <= 1.0):
        return None, "out_of_range"
    return (v, a), None


def _negation_index(text: str) -> tuple[list[int], list[int], list[int]]:
    """Sorted clause-boundary ends and negation-cue starts/ends of ``text`` (one pass each)."""
    boundaries = [m.end() for m in _CLAUSE_BOUNDARY.finditer(text)]
    cues = [(m.start(), m.end()) for m in _NEGATION_CUE.finditer(text)]
    return boundaries, [s for s, _ in cues], [e for _, e in cues]


def _is_negated(text: str, start: int, end: int, index: tuple[list[int], list[int], list[int]]) -> bool:
    boundaries, cue_starts, cue_ends = index
    k = bisect_right(boundaries, start) - 1
    clause_start = boundaries[k] if k >= 0 else 0
    # A cue lying wholly between the clause start and the mention negates it.
    c = bisect_left(cue_starts, clause_start)
    if c < len(cue_starts) and cue_ends[c] <= start:
        return True
    return _POST_NEGATION.match(text, end, min(len(text), end + _POST_WINDOW)) is not None


def extract_aus(
    text: str, *, drop_negated: bool = True, map_au_names: bool = True
) -> tuple[list[str], list[str]]:
    """AUs named in ``text``: (known canonical codes sorted, unknown codes sorted), each deduplicated."""
    mentions: list[tuple[int, int, int]] = [
        (m.start(), m.end(), int(m.group(1))) for m in _AU_CODE.finditer(text)
    ]
    if map_au_names:
        for m in _AU_NAME.finditer(text):
            # Unicode case folding can match a look-alike ("ſ" for "s") whose lower() is no known name: skip it.
            number = _AU_NAME_TO_NUMBER.get(" ".join(m.group().lower().replace("-", " ").split()))
            if number is not None:
                mentions.append((m.start(), m.end(), number))
    index = _negation_index(text) if drop_negated and mentions else None
    known, unknown = set(), set()
    for start, end, number in mentions:
        if index is not None and _is_negated(text, start, end, index):
            continue
        (known if number in ACTION_UNITS else unknown).add(number)
    return [f"AU{n}" for n in sorted(known)], [f"AU{n}" for n in sorted(unknown)]


def concluded_emotion(
    text: str | None, label_set: Sequence[str] | None = None, *, drop_negated: bool = True
) -> str | None:
    """The last non-negated emotion word (or synonym) of ``text`` that lies in ``label_set``; None if none."""
    if not text:
        return None
    index = None
    for m in reversed(list(_EMOTION_WORD.finditer(text))):
        label = normalize_emotion(m.group(), label_set)
        if label is None:
            continue
        if drop_negated:
            index = index or _negation_index(text)
            if _is_negated(text, m.start(), m.end(), index):
                continue
        return label
    return None


def split_answer_labels(answer: str | None) -> list[str]:
    """The answer cut into candidate labels on ``, ; / | & +``, line breaks, "or" and "and"; blanks dropped."""
    if not answer:
        return []
    return [part.strip() for part in _LABEL_SPLIT.split(answer) if part.strip()]


def parse(
    text: str,
    *,
    label_set: Sequence[str] | None = None,
    drop_negated: bool = True,
    map_au_names: bool = True,
    au_scope: str = "think",
) -> Parsed:
    """Parse one completion.

    Args:
        text: the decoded completion (anything: it never raises; non-strings are read as empty).
        label_set: the sample's closed emotion label set; None accepts every Facial-R1 emotion word.
        drop_negated: drop negated AU / emotion mentions (False = count every mention, as the published code).
        map_au_names: also read FACS names ("lip corner puller") as AUs.
        au_scope: ``"think"`` reads AUs from the think block only (none without one); ``"completion"`` from the
            whole text.
    """
    if not isinstance(text, str):
        text = ""
    if au_scope not in ("think", "completion"):
        raise ValueError(f"au_scope must be 'think' or 'completion', got {au_scope!r}")
    labels = tuple(label_set) if label_set else None
    blocks = _blocks(text)
    au_text = blocks.think if au_scope == "think" else text
    aus, unknown = extract_aus(au_text or "", drop_negated=drop_negated, map_au_names=map_au_names)
    intensities, intensity_errors = extract_intensities(au_text or "", aus) if aus else ({}, [])
    va, va_error, strict_va, lenient_va = _va_block(text, blocks)
    return Parsed(
        think=blocks.think,
        answer=blocks.answer,
        format_strict=blocks.strict,
        format_lenient=blocks.lenient,
        aus=sort_aus(aus),
        unknown_aus=unknown,
        emotion=normalize_emotion(blocks.answer, labels) if blocks.answer is not None else None,
        concluded_emotion=concluded_emotion(blocks.think, labels, drop_negated=drop_negated),
        answer_labels_raw=split_answer_labels(blocks.answer),
        au_intensities=intensities,
        intensity_errors=intensity_errors,
        va=va,
        va_error=va_error,
        format_strict_va=strict_va,
        format_lenient_va=lenient_va,
        compound=normalize_compound(blocks.answer),
        answer_emotions=answer_components(blocks.answer),
    )
