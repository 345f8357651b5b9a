"""Words, sentences and TF-IDF vectors for the generators: small, deterministic, numpy only."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float64]

STOPWORDS: Final = frozenset(
    """
    a about above across after afterwards again against all almost alone along already also although
    always am among amongst an and another any anyhow anyone anything anyway anywhere are around as at
    back be became because become becomes becoming been before beforehand behind being below beside
    besides between beyond both but by can cannot could did do does doing done down due during each
    either else elsewhere enough etc even ever every everyone everything everywhere except few first
    for former formerly from further get gets given gives go had has have having he hence her here
    hereafter hereby herein hers herself him himself his how however i if in indeed instead into is it
    its itself just keep last latter least less like made make makes many may me meanwhile might more
    moreover most mostly much must my myself namely neither never nevertheless next no nobody none nor
    not nothing now nowhere of off often on once one only onto or other others otherwise our ours
    ourselves out over own part per perhaps please put rather re same see seem seemed seeming seems
    several she should since so some somehow someone something sometime sometimes somewhere still such
    than that the their theirs them themselves then thence there thereafter thereby therefore therein
    thereupon these they this those though through throughout thus to together too toward towards
    under until up upon us used uses using very via was we well were what whatever when whence whenever
    where whereas whereby wherein whether which while who whoever whole whom whose why will with within
    without would yet you your yours yourself yourselves also two three four five six seven eight nine
    ten hundred thousand million called known include includes including included use new way ways
    lot lots kind kinds thing things time times year years early later largely mainly often
    """.split()
)

# Words that end a sentence only when they do not end with a period (initials are handled apart).
_ABBREVIATIONS: Final = frozenset(
    "mr mrs ms dr prof sr jr st mt vs etc e.g i.e cf fig figs no nos vol vols pp ca approx al ed eds "
    "inc ltd co corp jan feb mar apr jun jul aug sep sept oct nov dec gen col lt sgt rev".split()
)
_WORD: Final = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")
_BOUNDARY: Final = re.compile("[.!?\u2026]+[\"'\u201d\u2019)\\]]*(?=\\s)|\\n[ \\t]*\\n")
_OPENING: Final = "\"'\u201c\u2018(["
_TERMINAL: Final = re.compile("[.!?\u2026][\"'\u201d\u2019)\\]]*$")
_SPACE: Final = re.compile(r"\s+")


def collapse(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def stem(word: str) -> str:
    """A deliberately timid plural stemmer: roads -> road, studies -> study, glass stays."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "ous")):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def terms(text: str) -> list[str]:
    """Content terms: lower-cased, stemmed words of three letters or more that are not stopwords."""
    out = []
    for word in words(text):
        lower = word.lower().replace("\u2019", "'")
        if lower.endswith("'s"):
            lower = lower[:-2]
        if len(lower) >= 3 and lower not in STOPWORDS:
            out.append(stem(lower))
    return out


def word_count(text: str) -> int:
    return len(re.findall(r"[\w\u2019'-]+", text))


@dataclass(frozen=True)
class Span:
    start: int
    end: int


def sentence_spans(text: str) -> list[Span]:
    """Sentences of ``text`` as [start, end) offsets: ``text[start:end]`` is each one verbatim."""
    spans: list[Span] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        if match.group().strip():
            follower = text[match.end() :].lstrip()
            if not follower or not (follower[0].isupper() or follower[0].isdigit() or follower[0] in _OPENING):
                continue
            if match.group()[0] == "." and _is_abbreviation(text, match.start()):
                continue
            end = match.end()
        else:
            end = match.start()
        _add_trimmed(text, start, end, spans)
        start = match.end()
    _add_trimmed(text, start, len(text), spans)
    return spans


def _is_abbreviation(text: str, period: int) -> bool:
    before = re.search(r"([\w.]+)$", text[:period])
    if before is None:
        return False
    word = before.group(1)
    if len(word) == 1 and word.isupper():  # an initial: "J. R. Smith"
        return True
    return word.lower().rstrip(".") in _ABBREVIATIONS


def _add_trimmed(text: str, start: int, end: int, spans: list[Span]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append(Span(start, end))


def is_whole_sentence(sentence: str) -> bool:
    """Starts like a sentence, ends like one, and is mostly prose (not a table row or a heading)."""
    if not _TERMINAL.search(sentence):
        return False
    first = sentence.lstrip(_OPENING)[:1]
    if not first or not (first.isupper() or first.isdigit()):
        return False
    n = len(words(sentence))
    if not 5 <= n <= 80:
        return False
    visible = [c for c in sentence if not c.isspace()]
    return sum(c.isalpha() for c in visible) >= 0.6 * len(visible)


def truncate_words(text: str, limit: int) -> str:
    """A prefix of ``text`` of at most ``limit`` characters that ends on a word boundary."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit + 1)
    return text[: cut if cut > limit // 2 else limit].rstrip()


class TfIdf:
    """Inverse document frequencies learnt from a fixed list of documents."""

    def __init__(self, documents: Iterable[Sequence[str]]) -> None:
        df: Counter[str] = Counter()
        n = 0
        for doc in documents:
            df.update(set(doc))
            n += 1
        self.documents = n
        self.idf: dict[str, float] = {t: math.log((1 + n) / (1 + c)) + 1.0 for t, c in sorted(df.items())}

    def matrix(self, documents: Sequence[Sequence[str]], vocabulary: Sequence[str] | None = None) -> Matrix:
        """L2-normalised TF-IDF rows over ``vocabulary`` (default: every term of ``documents``)."""
        if vocabulary is None:
            vocabulary = sorted({t for doc in documents for t in doc})
        index = {t: i for i, t in enumerate(vocabulary)}
        out = np.zeros((len(documents), max(len(vocabulary), 1)), dtype=np.float64)
        for row, doc in enumerate(documents):
            for term, count in Counter(doc).items():
                col = index.get(term)
                if col is not None:
                    out[row, col] = (1.0 + math.log(count)) * self.idf.get(term, 1.0)
        return normalise(out)


def normalise(rows: Matrix) -> Matrix:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: Matrix = rows / np.maximum(norms, 1e-12)
    return unit


def minmax(values: Matrix) -> Matrix:
    """``values`` scaled to [0, 1]; all ones when they are all equal."""
    if values.size == 0:
        return values
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.ones_like(values)
    scaled: Matrix = (values - low) / (high - low)
    return scaled


_MD_SPECIAL: Final = re.compile(r"([\\`*_\[\]<>#|~])")
_MD_LEADING: Final = re.compile(r"^(\d+)([.)])(?=\s)|^([-+])(?=\s)")


def md_escape(text: str) -> str:
    """``text`` on one line, with every character Markdown could read as markup escaped."""
    flat = _MD_SPECIAL.sub(r"\\\1", collapse(text))
    flat = re.sub(r"&(?=#?\w+;)", r"\\&", flat)
    return _MD_LEADING.sub(lambda m: f"{m.group(1)}\\{m.group(2)}" if m.group(1) else f"\\{m.group(3)}", flat)


def join_names(names: Sequence[str], conjunction: str = "and") -> str:
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} {conjunction} {names[-1]}"


def title_end(text: str, title: str) -> int:
    """Where ``text`` stops repeating ``title`` when it opens with it (case, spacing and a final
    stop aside): the offset just past it, else 0. A source's title at the head of its first chunk
    is the paper's name, not something the paper says."""
    title_words = title.split()
    if not title_words:
        return 0
    pattern = r"\s*" + r"\s+".join(re.escape(w) for w in title_words) + r"[.:]?(?=\s|$)"
    found = re.match(pattern, text, flags=re.IGNORECASE)
    return found.end() if found else 0


def same_words(a: str, b: str) -> bool:
    """``a`` and ``b`` are the same text but for case, spacing and a final stop."""
    return collapse(a).lower().rstrip(".") == collapse(b).lower().rstrip(".")


def finding_spans(text: str, title: str) -> list[Span]:
    """``sentence_spans(text)`` without the source's title: the title heading the text is cut off
    the sentence it runs into (or dropped when it stands alone), and a sentence that is only the
    title is left out wherever it stands."""
    head = title_end(text, title) if title.strip() else 0
    out: list[Span] = []
    for span in sentence_spans(text):
        start = span.start
        if start < head:
            start = head
            while start < span.end and text[start].isspace():
                start += 1
            if start >= span.end:
                continue
        if title.strip() and same_words(text[start : span.end], title):
            continue
        out.append(Span(start, span.end))
    return out


_EFFECT: Final = (
    r"(?:associat\w*|effects?|effective\w*|increas\w*|decreas\w*|reduc\w*|lower\w*|higher|improv\w*|risks?|"
    r"correlat\w*|significant\w*|protect\w*|predict\w*|caus\w*|inhibit\w*|promot\w*|enhanc\w*|prevent\w*|"
    r"benefit\w*|linked|link|differ\w*|chang\w*|impact\w*|affect\w*|influenc\w*)"
)
_EFFECT_WORD: Final = re.compile(rf"\b{_EFFECT}\b", re.IGNORECASE)
# A negation at most three words before an effect word: "was not associated", "did not
# significantly reduce", "no significant difference"; or a word that is a null result by itself.
_NO_EFFECT: Final = re.compile(
    rf"\b(?:no|not|nor|neither|without|never|failed\s+to|lack\s+of)\b(?:\W+\w+){{0,3}}?\W+{_EFFECT}\b"
    r"|\b(?:unrelated|unaffected|unchanged|non-?significant\w*|similar\s+between)\b",
    re.IGNORECASE,
)


_OPEN_QUESTION: Final = re.compile(r"\bwhether\b|\?[\"'\u201d\u2019)]*$", re.IGNORECASE)


def stance(sentence: str) -> str | None:
    """ "none" when ``sentence`` reports no effect or association, "effect" when it reports one,
    None when it speaks of neither (a method, a definition, a number on its own) or asks
    ("to evaluate whether...", a question)."""
    if _OPEN_QUESTION.search(sentence):
        return None
    if _NO_EFFECT.search(sentence):
        return "none"
    return "effect" if _EFFECT_WORD.search(sentence) else None
