"""Questions asked of a notebook: ask (enqueue), answer (the job's work), delete, save as note.

The answer streams over the notebook's event stream while it is written: ``answer`` events
carry the question id, the text so far and the newest piece (``delta``); the final
``answer`` event has ``done: true`` with the citations. A client that reconnects with
Last-Event-ID replays them from the stream's history, so it gets the whole answer.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backend.errors import Conflict, DomainError
from backend.runtime import JobError, batch_create, jobs_cancel_active, progress, publish_event
from notebooks import embeddings, jobs, selectors
from notebooks.answer import Answer, Evidence, answer_offline
from notebooks.answer_llm import answer_with_llm
from notebooks.llm import LLMError, chat_stream
from notebooks.models import Notebook, Question, Source
from notebooks.search import Hit

logger = logging.getLogger(__name__)

EVIDENCE_PASSAGES = 8
# The LLM's pieces are coalesced into one event at most this often (a token each would be
# hundreds of events an answer); cancellation is checked at most every CANCEL_CHECK_SECONDS.
STREAM_EVENT_SECONDS = 0.05
CANCEL_CHECK_SECONDS = 0.5
NOTE_TITLE_MAX = 300


class QuestionRejected(DomainError):
    code = "QUESTION_REJECTED"


@transaction.atomic
def question_ask(
    *,
    notebook: Notebook,
    owner: Any,
    question: str,
    source_ids: list[str] | None = None,
    previous_id: str | None = None,
) -> Question:
    question = question.strip()
    if not question:
        raise QuestionRejected("The question is empty.", code="EMPTY_QUESTION")
    source_ids = [str(s) for s in source_ids or []]
    if source_ids:
        found = {
            str(s) for s in Source.objects.filter(notebook=notebook, id__in=source_ids).values_list("id", flat=True)
        }
        missing = sorted(set(source_ids) - found)
        if missing:
            raise QuestionRejected(
                "Some source_ids are not sources of this notebook.", code="UNKNOWN_SOURCE", details={"missing": missing}
            )
    previous = None
    if previous_id:
        # Another user's question is as unknown as a missing one.
        previous = Question.objects.filter(id=previous_id, notebook=notebook, owner=owner).first()
        if previous is None:
            raise QuestionRejected("The conversation's earlier question was not found.", code="UNKNOWN_CONVERSATION")
    if not selectors.ready_source_count(notebook=notebook, source_ids=source_ids or None):
        raise Conflict("The notebook has no ready sources to answer from yet.", code="NO_READY_SOURCES")
    asked = Question.objects.create(
        notebook=notebook, owner=owner, question=question, source_ids=source_ids, previous=previous
    )
    job = jobs.question_answer.enqueue(
        {"question_id": str(asked.id)}, owner=owner, subject=asked, notebook_id=notebook.id
    )
    Question.objects.filter(id=asked.id).update(job_id=job.id)
    asked.job_id = job.id
    return asked


def _conversation(question: Question, turns: int = 3) -> list[Question]:
    """The earlier questions of this conversation, oldest first."""
    earlier: list[Question] = []
    current = question.previous
    while current is not None and len(earlier) < turns:
        earlier.append(current)
        current = current.previous
    return earlier[::-1]


def llm_configured() -> bool:
    return bool(settings.LLM_BASE_URL.strip() and settings.LLM_MODEL.strip())


def answer_for(
    *,
    notebook: Notebook,
    question: str,
    source_ids: list[str] | None = None,
    context: str = "",
    history: list[tuple[str, str]] | None = None,
    on_text: Callable[[str, str], None] | None = None,
    hits: list[Hit] | None = None,
    use_llm: bool | None = None,
) -> Answer:
    """Retrieve (unless ``hits`` are given) and answer: the job's work without the bookkeeping,
    and what ``make eval`` measures. The LLM answers when one is configured (``use_llm`` None)
    or asked for, from the same passages; ``history`` is the earlier turns it reads."""
    if hits is None:
        progress(10, "Retrieving passages")
        # A follow-up's retrieval also looks for the earlier turns' words ("and in children?").
        hits = selectors.question_evidence(
            notebook=notebook, query=f"{context} {question}".strip(), source_ids=source_ids, k=EVIDENCE_PASSAGES
        )
    evidence = [Evidence(h.chunk_id, h.source_id, h.source_title, h.position, h.page, h.text, h.time) for h in hits]
    progress(40, "Writing the answer")
    if llm_configured() if use_llm is None else use_llm:
        stream = functools.partial(
            chat_stream,
            base_url=settings.LLM_BASE_URL.strip(),
            model=settings.LLM_MODEL.strip(),
            api_key=settings.LLM_API_KEY or None,
            timeout=settings.LLM_TIMEOUT,
            max_tokens=settings.LLM_MAX_TOKENS,
        )
        try:
            embed = embeddings.embedder().embed
            return answer_with_llm(question, evidence, embed, stream, history=history or [], on_text=on_text)
        except LLMError as exc:
            # Timeouts and 5xx are retried by the job (retries=2, a second apart); a rejected
            # request (bad key, unknown model) fails at once with the endpoint's reason.
            raise JobError(exc.code, exc.message, retryable=exc.retryable) from exc
    return answer_offline(question, evidence, embeddings.embedder().embed, context=context, on_text=on_text)


def question_answerable(*, notebook: Notebook, question: str) -> bool:
    """Whether the offline answerer answers ``question`` from the notebook (rather than
    declining): the check a suggested question passes before the overview shows it."""
    hits = selectors.question_evidence(notebook=notebook, query=question, source_ids=None, k=EVIDENCE_PASSAGES)
    evidence = [Evidence(h.chunk_id, h.source_id, h.source_title, h.position, h.page, h.text) for h in hits]
    return answer_offline(question, evidence, embeddings.embedder().embed).answered


class _Coalesced:
    """An ``on_text`` that publishes the text so far at most every STREAM_EVENT_SECONDS (each
    event's delta is what arrived since the last one) and checks for cancellation meanwhile."""

    def __init__(self, publish_text: Callable[[str, str], None]) -> None:
        self.publish_text = publish_text
        self.sent = ""
        self.published_at = 0.0
        self.checked_at = time.monotonic()

    def __call__(self, text: str, delta: str) -> None:
        now = time.monotonic()
        if now - self.checked_at >= CANCEL_CHECK_SECONDS:
            self.checked_at = now
            progress(60, "Writing the answer")  # raises JobCancelled when the job was cancelled
        if now - self.published_at < STREAM_EVENT_SECONDS:
            return
        self.publish_text(text, text[len(self.sent) :] if text.startswith(self.sent) else text)
        self.sent, self.published_at = text, now


def question_answer(*, question_id: str) -> dict[str, Any] | None:
    """Retrieve the passages, answer from them (streamed as events), store the answer."""
    question = Question.objects.select_related("notebook", "previous").filter(id=question_id).first()
    if question is None:
        logger.info("Question %s is gone; nothing to answer", question_id)
        return None
    earlier = _conversation(question)
    context = " ".join(q.question for q in earlier)
    use_llm = llm_configured()

    def streamed(text: str, delta: str) -> None:
        publish_event(
            question.notebook_id,
            "answer",
            {"question": str(question.id), "text": text, "delta": delta, "done": False},
        )

    answer = answer_for(
        notebook=question.notebook,
        question=question.question,
        source_ids=question.source_ids or None,
        context=context,
        history=[(q.question, q.answer) for q in earlier if q.answer],
        # The offline answerer writes a sentence at a time; the LLM a token at a time.
        on_text=_Coalesced(streamed) if use_llm else streamed,
        use_llm=use_llm,
    )
    progress(95, "Saving")
    citations = [c.to_dict() for c in answer.citations]
    updated = (
        Question.objects.filter(id=question.id)
        .exclude(status=Question.Status.CANCELLED)
        .update(
            status=Question.Status.COMPLETED,
            answer=answer.text,
            answered=answer.answered,
            citations=citations,
            answerer="llm" if use_llm else "offline",
            error="",
            error_code="",
            completed_at=timezone.now(),
            updated_at=timezone.now(),
        )
    )
    if not updated:
        return None
    publish_event(
        question.notebook_id,
        "answer",
        {
            "question": str(question.id),
            "text": answer.text,
            "delta": "",
            "done": True,
            "answered": answer.answered,
            "citations": citations,
        },
    )
    return {"answered": answer.answered, "citations": len(citations), "score": answer.best_score}


def question_delete(*, question: Question) -> None:
    if question.job_id:
        jobs_cancel_active(job_ids=[question.job_id])
    question.delete()


def _note_text(question: Question) -> str:
    lines = [question.answer, "", f"Question: {question.question}", "", "Sources:"]
    for c in question.citations:
        where = f", page {c['page']}" if c.get("page") else f" at {c['time_label']}" if c.get("time_label") else ""
        lines.append(f'[{c["number"]}] {c["source_title"]}{where}: "{c["quote"]}"')
    return "\n".join(lines)


@transaction.atomic
def question_save_as_note(*, question: Question) -> Source:
    """The answer as a source of kind ``note`` in the notebook (searchable once its job has run),
    keeping the citations as links to the passages it quoted. Saving twice returns the same note."""
    locked = Question.objects.select_for_update().get(id=question.id)
    if locked.status != Question.Status.COMPLETED or not locked.answered:
        raise Conflict("Only an answered question can be saved as a note.", code="NOT_ANSWERED")
    if locked.note_id and Source.objects.filter(id=locked.note_id).exists():
        return Source.objects.get(id=locked.note_id)
    text = _note_text(locked)
    data = text.encode()
    note = Source.objects.create(
        notebook_id=locked.notebook_id,
        kind=Source.Kind.NOTE,
        title=f"Note: {locked.question}"[:NOTE_TITLE_MAX],
        content_type="txt",
        size=len(data),
        content_hash=hashlib.sha256(data).hexdigest(),
        text=text,
        citations=locked.citations,
    )
    batch = batch_create(owner=locked.owner, notebook_id=locked.notebook_id, label="note")
    job = jobs.source_process.enqueue(
        {"source_id": str(note.id)}, owner=locked.owner, subject=note, notebook_id=locked.notebook_id, batch=batch
    )
    Source.objects.filter(id=note.id).update(job_id=job.id)
    note.job_id = job.id
    Question.objects.filter(id=locked.id).update(note=note)
    return note


def ask_preload() -> None:
    """Called by the default worker at start (settings.QUIRE_WORKER_PRELOAD): the embedder, so
    the first question does not pay for loading the model."""
    embeddings.embedder()
