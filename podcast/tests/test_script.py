import itertools

import pytest

from podcast.script import KeyPoint, build_script, count_words, words_for_minutes

TOPICS = {
    "glacier retreat": [
        (
            "Alpine glaciers lost about 39 percent of their volume between 2000 and 2023.",
            "s1",
            "Glacier Monitoring Report",
        ),
        ("The loss doubled after 2010, mostly because summers got warmer.", "s1", "Glacier Monitoring Report"),
        ("Smaller glaciers below 3000 metres are expected to vanish by 2050.", "s2", "ipcc_summary.pdf"),
        ("Meltwater now supplies a rising share of summer river flow in the Rhone basin.", "s3", "river-notes.md"),
    ],
    "sea level": [
        ("Global sea level rose 21 centimetres between 1900 and 2020.", "s2", "ipcc_summary.pdf"),
        ("The rate of rise has more than doubled since the 1990s.", "s2", "ipcc_summary.pdf"),
        ("Thermal expansion explains roughly a third of the observed rise.", "s4", "Ocean Heat Primer"),
        ("Jakarta is sinking faster than the sea around it is rising.", "s3", "river-notes.md"),
    ],
    "adaptation": [
        ("NASA satellite data helps planners map flood risk street by street.", "s4", "Ocean Heat Primer"),
        ("Most adaptation funding goes to hard defences such as sea walls.", "s2", "ipcc_summary.pdf"),
        ("Restored wetlands cut storm surge heights by up to half in field trials.", "s3", "river-notes.md"),
        ("Early warning systems reduced flood deaths in Bangladesh tenfold.", "s1", "Glacier Monitoring Report"),
    ],
}


def key_points(repeat: int = 1) -> list[KeyPoint]:
    """Three topics; `repeat` > 1 adds numbered variants so long budgets have enough material."""
    points = []
    for round_ in range(repeat):
        for topic, facts in TOPICS.items():
            for text, source_id, title in facts:
                if round_:
                    text = f"{text[:-1]} in study number {round_ + 1}."
                points.append(KeyPoint(text=text, source_id=source_id, source_title=title, topic=topic))
    return points


def test_it_builds_a_dialogue_that_quotes_the_sources_within_budget() -> None:
    points = key_points()
    script = build_script(points, title="Climate and ice", focus=None, target_words=300)

    assert 300 * 0.85 <= count_words(script) <= 300 * 1.15
    b_text = " ".join(turn.text for turn in script if turn.speaker == "B")
    quoted = [point for point in points if point.text[1:] in b_text]
    assert len(quoted) >= 6
    assert {point.topic for point in quoted} == set(TOPICS)  # every topic gets a fact
    for point in quoted:
        # The B turn that says a fact cites the source it came from.
        turn = next(turn for turn in script if turn.speaker == "B" and point.text[1:] in turn.text)
        assert point.source_id in turn.source_ids
    for topic in TOPICS:
        assert any(topic in turn.text for turn in script if turn.speaker == "A")


def test_it_alternates_hosts_and_ends_with_a_summary() -> None:
    script = build_script(key_points(), title="Climate and ice", focus=None, target_words=400)

    assert [turn.speaker for turn in script[:2]] == ["A", "B"]
    assert all(a.speaker != b.speaker for a, b in itertools.pairwise(script))
    assert all(turn.source_ids for turn in script if turn.speaker == "B")
    assert "?" in " ".join(turn.text for turn in script if turn.speaker == "A")
    last = script[-1]
    assert "sum up" in last.text.lower() or "recap" in last.text.lower()
    assert all(topic in last.text for topic in TOPICS)
    # Answers are several sentences long, not one sentence per line.
    answers = [turn for turn in script[2:-2] if turn.speaker == "B"]
    assert all(turn.text.count(".") >= 2 for turn in answers)
    # The question templates vary.
    questions = [turn.text for turn in script if turn.speaker == "A"]
    assert len(set(questions)) == len(questions)


@pytest.mark.parametrize("target", [180, 250, 400, 650, 900, 1300])
def test_it_respects_the_word_budget(target: int) -> None:
    script = build_script(key_points(repeat=4), title="Climate and ice", focus="sea walls", target_words=target)

    assert target * 0.85 <= count_words(script) <= target * 1.15


def test_it_does_not_pad_when_the_material_runs_out() -> None:
    points = key_points()[:2]
    script = build_script(points, title="Glaciers", focus=None, target_words=900)

    assert count_words(script) < 300
    assert all(point.text[1:] in " ".join(turn.text for turn in script) for point in points)


def test_it_is_deterministic() -> None:
    first = build_script(key_points(), title="Climate and ice", focus="flood", target_words=350)
    second = build_script(key_points(), title="Climate and ice", focus="flood", target_words=350)

    assert first == second


def test_it_puts_the_focus_first() -> None:
    script = build_script(key_points(), title="Climate and ice", focus="flood defences", target_words=300)

    assert "adaptation" in script[2].text
    assert "flood" in script[3].text


def test_it_keeps_names_capitalised_and_lowercases_common_words() -> None:
    script = build_script(key_points(repeat=2), title="Climate and ice", focus=None, target_words=1200)
    text = " ".join(turn.text for turn in script)

    assert "jakarta" not in text and "nASA" not in text
    assert "Jakarta" in text and "NASA" in text


def test_it_rejects_an_empty_notebook() -> None:
    with pytest.raises(ValueError):
        build_script([], title="Nothing", focus=None, target_words=300)


def test_it_turns_minutes_into_words() -> None:
    assert words_for_minutes(5, 160) == 800
    assert words_for_minutes(0.5, 150) == 75
    with pytest.raises(ValueError):
        words_for_minutes(0, 160)
