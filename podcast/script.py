"""Offline two-host podcast script from a notebook's key points.

Host A introduces the episode, asks and reacts; host B answers with facts taken from the sources and
names them. They move through the topics in order (topics matching the focus first) and close with a
take-away and a summary. Deterministic: the same input always gives the same script, so a retried job
produces the same turns and can reuse their audio.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Speaker = Literal["A", "B"]

# Slightly over the target is fine (listeners asked for "about N minutes"); the greedy fill stops
# below this ceiling, so the result lands within about ±15% of the target when material allows.
BUDGET_CEILING = 1.10
MAX_POINT_WORDS = 60
POINTS_PER_ANSWER = 2
MAX_TOPICS_NAMED = 4


@dataclass(frozen=True)
class KeyPoint:
    text: str
    source_id: str
    source_title: str
    topic: str


@dataclass
class Turn:
    speaker: Speaker
    text: str
    source_ids: list[str] = field(default_factory=list)

    @property
    def words(self) -> int:
        return len(self.text.split())


def words_for_minutes(minutes: float, words_per_minute: float) -> int:
    """Word budget for an episode of `minutes` at the voice's measured `words_per_minute`."""
    if minutes <= 0 or words_per_minute <= 0:
        raise ValueError("minutes and words_per_minute must be positive")
    return max(1, round(minutes * words_per_minute))


def count_words(turns: Sequence[Turn]) -> int:
    return sum(turn.words for turn in turns)


# --- templates -------------------------------------------------------------------------------------

_INTROS = (
    "Welcome to the show. Today we're digging into {title}{focus}. We'll go through {topics}, "
    "and I have plenty of questions.",
    "Hi everyone, and welcome back. This episode is all about {title}{focus}. On the list: {topics}.",
    "Hello and welcome. We're spending this episode on {title}{focus}, and there's a lot to cover, from {topics}.",
)
_SOURCE_INTROS = (
    "Thanks. I've been reading {count} for this, including {titles}, so everything I say today comes from them.",
    "Happy to be here. My notes come from {count}, among them {titles}. Let's see what they tell us.",
    "Glad to. I went through {count}, {titles} among them, and there's some good material in there.",
)
_TRANSITIONS = (
    "Let's move on.",
    "Okay, switching gears.",
    "Now for something a bit different.",
    "Here's where I wanted to go next.",
)
_TOPIC_QUESTIONS = (
    "What do the sources say about {topic}?",
    "So, {topic}. Where should we start?",
    "I'm curious about {topic}. What did you find?",
    "How would you explain {topic} to someone new to it?",
    "What's the big picture on {topic}?",
)
_REACTIONS_NUMBERS = (
    "Those numbers are hard to ignore.",
    "That's a striking figure.",
    "Okay, the numbers really help here.",
)
_REACTIONS = (
    "That makes sense.",
    "Interesting.",
    "Huh, I didn't expect that.",
    "That's a useful way to put it.",
)
# (question, how B starts the answer): the opener has to fit the question.
_FOLLOW_UPS = (
    ("Is there more to it?", "There is."),
    ("What else stood out about {topic}?", "A couple of things."),
    ("Does the evidence go further than that?", "It does, actually."),
    ("How does that fit with the rest of the material?", "Pretty well."),
    ("Can you give me another example?", "Sure."),
)
_ANSWER_OPENERS = ("Sure.", "Good question.", "Right.", "Well, there's a lot here.")
# Templates with {Fact} start the fact as its own sentence and suit any fact; those with {fact} run it
# on from a clause and are used only when its first word can safely be lower-cased.
_FIRST_FACT = (
    "Here's what {source} says. {Fact}",
    "One thing from {source} stood out. {Fact}",
    "{source} has a good example. {Fact}",
)
_FIRST_FACT_RUN_ON = ("According to {source}, {fact}", "{source} points out that {fact}")
_SAME_SOURCE_FACT = ("The same source goes further. {Fact}", "And there's more in there. {Fact}")
_SAME_SOURCE_FACT_RUN_ON = ("The same source also notes that {fact}", "It goes on to say that {fact}")
_OTHER_SOURCE_FACT = ("{source} adds another angle. {Fact}", "There's also this, from {source}. {Fact}")
_OTHER_SOURCE_FACT_RUN_ON = ("{source} adds that {fact}", "Meanwhile, {source} points out that {fact}")
_WRAP_UP_QUESTIONS = (
    "We're almost out of time. What should listeners take away from all this?",
    "Before we wrap up, if people remember one thing, what should it be?",
    "Let's bring it home. What's the main takeaway for you?",
)
_TAKEAWAYS = (
    "If I had to pick one thing, it's what {source} says about {topic}. {Fact}",
    "The main one is about {topic}. {Fact}",
)
_TAKEAWAYS_RUN_ON = ("For me it's {topic}. As {source} puts it, {fact}",)
_SUMMARIES = (
    "To sum up, we covered {topics}, all drawn from {count}. Thanks for listening, and see you next time.",
    "So, a quick recap: we went through {topics}, with {count} behind every claim. That's it for today. "
    "Thanks for listening.",
    "Let me sum up. Today was about {title}: we talked through {topics}, using {count}. Thanks for joining us.",
)

# Sentence starters that are safe to lower-case after "according to X, ..."; anything else (names,
# acronyms) keeps its capital.
_COMMON_STARTERS = frozenset(
    "a an the this that these those it its there their they most many some several few each every both "
    "one two three four five six seven eight nine ten in on at for from by with without after before "
    "during over under between among about around across while when whereas although though because "
    "since if unless researchers scientists people participants patients users studies results data "
    "overall however also only more less nearly almost roughly about".split()
)
_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_TITLE_EXTENSIONS = re.compile(r"\.(pdf|txt|md|markdown|html?|docx?|epub|rtf|csv)$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _pick(options: Sequence[str], seed: int, *position: int) -> str:
    index = seed
    for value in position:
        index = index * 31 + value
    return options[index % len(options)]


def _clean_text(text: str) -> str:
    text = " ".join(text.split()).strip(" -•*")
    words = text.split()
    if len(words) > MAX_POINT_WORDS:
        # Keep whole sentences up to the cap; a single overlong sentence is kept as it is.
        kept: list[str] = []
        for sentence in _SENTENCE_END.split(text):
            if kept and len(" ".join([*kept, sentence]).split()) > MAX_POINT_WORDS:
                break
            kept.append(sentence)
        text = " ".join(kept)
    if text and text[-1] not in ".!?":
        text += "."
    return text


def _clean_title(title: str) -> str:
    title = _TITLE_EXTENSIONS.sub("", " ".join(title.replace("_", " ").split()))
    return title or "one of the sources"


def _lowercase_words(texts: Sequence[str]) -> frozenset[str]:
    """Words the sources write in lower case: evidence that a capital at a sentence start is not a name."""
    return frozenset(re.findall(r"(?<![A-Za-z])[a-z][a-z'-]*", " ".join(texts)))


def _can_lower(fact: str, vocabulary: frozenset[str]) -> bool:
    first = fact.split(" ", 1)[0].strip(",;:")
    if not (first[:1].isupper() and first[1:].islower()):
        return first[:1].islower()  # acronyms, numbers, CamelCase stay as they are
    return first.lower() in _COMMON_STARTERS or first.lower() in vocabulary


def _say_fact(
    standalone: Sequence[str],
    run_on: Sequence[str],
    fact: str,
    vocabulary: frozenset[str],
    seed: int,
    *position: int,
    **values: str,
) -> str:
    if _can_lower(fact, vocabulary):
        template = _pick([*run_on, *standalone], seed, *position)
    else:
        template = _pick(standalone, seed, *position)
    return _capitalize(template.format(fact=fact[:1].lower() + fact[1:], Fact=fact, **values))


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _join_names(names: Sequence[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _topics_phrase(topics: Sequence[str]) -> str:
    if len(topics) > MAX_TOPICS_NAMED:
        return _join_names([*topics[: MAX_TOPICS_NAMED - 1], "a few more things"])
    return _join_names(topics)


def _count_phrase(count: int) -> str:
    noun = "source" if count == 1 else "sources"
    return f"{_NUMBER_WORDS[count] if count < len(_NUMBER_WORDS) else count} {noun}"


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _mentions(text: str, terms: set[str]) -> bool:
    return bool(terms & set(re.findall(r"[a-z0-9]+", text.lower())))


# --- assembly --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Point:
    text: str
    source_id: str
    source_title: str
    topic: str


def _ordered_topics(points: Sequence[_Point], focus: str | None) -> list[tuple[str, list[_Point]]]:
    """Topics in order of first appearance; with a focus, the topics and points that mention it first."""
    grouped: dict[str, list[_Point]] = {}
    for point in points:
        grouped.setdefault(point.topic, []).append(point)
    terms = {word for word in re.findall(r"[a-z0-9]+", (focus or "").lower()) if len(word) > 3}
    if not terms:
        return list(grouped.items())

    def matches(point: _Point) -> bool:
        return _mentions(f"{point.topic} {point.text}", terms)

    ordered = [(topic, sorted(items, key=lambda p: not matches(p))) for topic, items in grouped.items()]
    return sorted(ordered, key=lambda item: not (_mentions(item[0], terms) or any(map(matches, item[1]))))


def _render(
    plan: Sequence[tuple[str, Sequence[_Point]]],
    *,
    title: str,
    focus: str | None,
    seed: int,
    vocabulary: frozenset[str],
) -> list[Turn]:
    plan = [(topic, points) for topic, points in plan if points]
    topics = [topic for topic, _ in plan]
    used = [point for _, points in plan for point in points]
    source_ids = _unique([point.source_id for point in used])
    titles_by_id = {point.source_id: point.source_title for point in used}
    count = _count_phrase(len(source_ids))
    focus_clause = f", with a focus on {focus}" if focus else ""

    turns = [
        Turn("A", _pick(_INTROS, seed, 0).format(title=title, focus=focus_clause, topics=_topics_phrase(topics))),
        Turn(
            "B",
            _capitalize(
                _pick(_SOURCE_INTROS, seed, 1).format(
                    count=count, titles=_join_names([titles_by_id[sid] for sid in source_ids[:3]])
                )
            ),
            source_ids[:3],
        ),
    ]
    for topic_index, (topic, points) in enumerate(plan):
        groups = [points[start : start + POINTS_PER_ANSWER] for start in range(0, len(points), POINTS_PER_ANSWER)]
        for group_index, group in enumerate(groups):
            position = (topic_index, group_index)
            if group_index == 0:
                question = _pick(_TOPIC_QUESTIONS, seed, 2, *position).format(topic=topic)
                if topic_index:
                    question = f"{_pick(_TRANSITIONS, seed, 3, *position)} {question}"
                opener = _pick(_ANSWER_OPENERS, seed, 4, *position)
            else:
                said = " ".join(point.text for point in groups[group_index - 1])
                reactions = _REACTIONS_NUMBERS if re.search(r"\d", said) else _REACTIONS
                follow_up, opener = _FOLLOW_UPS[(seed * 31 + topic_index * 7 + group_index) % len(_FOLLOW_UPS)]
                question = f"{_pick(reactions, seed, 6, *position)} {follow_up.format(topic=topic)}"
            turns.append(Turn("A", question))

            first = group[0]
            sentences = [
                opener,
                _say_fact(
                    _FIRST_FACT,
                    _FIRST_FACT_RUN_ON,
                    first.text,
                    vocabulary,
                    seed,
                    8,
                    *position,
                    source=first.source_title,
                ),
            ]
            for previous, point in itertools.pairwise(group):
                if point.source_id == previous.source_id:
                    said = _say_fact(
                        _SAME_SOURCE_FACT, _SAME_SOURCE_FACT_RUN_ON, point.text, vocabulary, seed, 9, *position
                    )
                else:
                    said = _say_fact(
                        _OTHER_SOURCE_FACT,
                        _OTHER_SOURCE_FACT_RUN_ON,
                        point.text,
                        vocabulary,
                        seed,
                        10,
                        *position,
                        source=point.source_title,
                    )
                sentences.append(said)
            turns.append(Turn("B", " ".join(sentences), _unique([point.source_id for point in group])))

    key_topic, key_points = plan[0]
    key = key_points[0]
    turns.append(Turn("A", _pick(_WRAP_UP_QUESTIONS, seed, 11)))
    takeaway = _say_fact(
        _TAKEAWAYS, _TAKEAWAYS_RUN_ON, key.text, vocabulary, seed, 12, source=key.source_title, topic=key_topic
    )
    turns.append(Turn("B", takeaway, [key.source_id]))
    summary = _pick(_SUMMARIES, seed, 13).format(title=title, topics=_topics_phrase(topics), count=count)
    turns.append(Turn("A", summary, source_ids))
    return turns


def build_script(
    key_points: Sequence[KeyPoint], *, title: str, focus: str | None = None, target_words: int
) -> list[Turn]:
    """A two-host dialogue of about `target_words` words (see `words_for_minutes`).

    Points are taken round-robin across topics (the first point of every topic before any second
    point) and kept while the script stays under the budget ceiling. When the notebook has too little
    material the script is shorter than the budget rather than padded; the caller reports the real
    length. At least one point is always used, so a tiny budget can be exceeded.
    """
    if target_words <= 0:
        raise ValueError("target_words must be positive")
    points = list(
        dict.fromkeys(
            _Point(_clean_text(p.text), p.source_id, _clean_title(p.source_title), " ".join(p.topic.split()) or title)
            for p in key_points
            if p.text.strip()
        )
    )
    if not points:
        raise ValueError("no key points to build a script from")
    title = " ".join(title.split()) or "this notebook"
    focus = " ".join(focus.split()) if focus else None
    seed = int(hashlib.sha256(f"{title}\n{focus or ''}".encode()).hexdigest()[:8], 16)

    vocabulary = _lowercase_words([point.text for point in points])
    topics = _ordered_topics(points, focus)
    candidates = [
        (topic_index, point)
        for depth in range(max(len(items) for _, items in topics))
        for topic_index, (_, items) in enumerate(topics)
        if depth < len(items)
        for point in [items[depth]]
    ]
    ceiling = target_words * BUDGET_CEILING
    chosen: list[list[_Point]] = [[] for _ in topics]

    def render() -> list[Turn]:
        plan = [(topic, chosen[i]) for i, (topic, _) in enumerate(topics)]
        return _render(plan, title=title, focus=focus, seed=seed, vocabulary=vocabulary)

    script: list[Turn] = []
    for topic_index, point in candidates:
        chosen[topic_index].append(point)
        attempt = render()
        if script and count_words(attempt) > ceiling:
            chosen[topic_index].pop()
            continue
        script = attempt
    return script
