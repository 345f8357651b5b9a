"""Fixtures for the generation tests: passages from three documents and a fake chat endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reports.generation.types import Passage
from reports.tests.documents import make_passages
from tests.fake_llm import FakeChat, serve_fake_chat


@pytest.fixture(scope="session")
def passages() -> list[Passage]:
    return make_passages("hashing")


@pytest.fixture
def fake_chat() -> Iterator[FakeChat]:
    with serve_fake_chat() as state:
        yield state
