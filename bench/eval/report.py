"""Offline reports on SciFact's training claims, written by the report job's own service.

Each topic is a training claim with evidence (``TOPICS`` of them, spread over the list); a
Report row is made for it in the SciFact notebook and ``reports.services.report_generate``
writes it, as the reports worker would (retrieval, generator, saving). Measured per report and
pooled over all of them:

- relevant share: of the passages the report cites (each chunk once), the share from abstracts
  the qrels call relevant to the claim;
- reports citing a relevant abstract at all;
- section titles found word for word (case aside) in a passage the section cites;
- citations whose quote starts with the cited source's title (a paper title quoted as a finding);
- reports whose lead says, with citations, where the sources agree or disagree.

``BEFORE`` holds the same measures taken with this module on the generator as it was before
issue #23 (commit ca94cac: semantic retrieval over every chunk, sections named by frequent words).
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from bench.eval import scifact

TOPICS = 30
LENGTH = "medium"
# Measured with this module on commit ca94cac, the generator before issue #23
# (bench/results/eval-20261205-165431-report-before-ca94cac.md).
BEFORE: dict[str, float] = {
    "relevant share of cited passages": 0.209,
    "reports citing a relevant abstract": 0.900,
    "section titles found in a cited passage": 0.000,
    "citations quoting a source title": 57.0,
    "leads citing an agreement or a disagreement": 0.000,
    "citations per report": 7.967,
    "sections per report": 2.800,
    "words per report": 467.933,
}
_HEADING = re.compile(r"^## (.+)$", re.MULTILINE)
_CITE = re.compile(r"(?<!\\)\[(\d+)\]")
FIXED_SECTIONS = {"Introduction", "Key points", "Conclusion", "Review questions", "References"}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower().rstrip(".")


def _unescape(markdown: str) -> str:
    return re.sub(r"\\(.)", r"\1", markdown)


def section_citations(markdown: str) -> dict[str, set[int]]:
    """Topic section heading -> the citation numbers its text uses."""
    out: dict[str, set[int]] = {}
    parts = _HEADING.split(markdown)
    for heading, text in zip(parts[1::2], parts[2::2], strict=True):
        heading = _unescape(heading.strip())
        if heading not in FIXED_SECTIONS:
            out[heading] = {int(n) for n in _CITE.findall(text)}
    return out


def topics(docs_in_notebook: set[str]) -> list[tuple[str, str, set[str]]]:
    """(claim id, claim, relevant doc ids): claims with evidence, spread evenly over the list."""
    judged = scifact.qrels()
    claims = [
        (str(c["_id"]), c["claim"], {d for d, g in judged.get(str(c["_id"]), {}).items() if g > 0})
        for c in scifact.evidence()
        if c["evidence"] and all(e["doc_id"] in docs_in_notebook for e in c["evidence"])
    ]
    claims = [c for c in claims if c[2]]
    return claims[:: max(1, len(claims) // TOPICS)][:TOPICS]


def measure(notebook: Any, docs: dict[str, str]) -> tuple[dict[str, float], list[str]]:
    from django.contrib.auth import get_user_model

    from notebooks.models import Chunk
    from reports.models import Report
    from reports.services import report_generate

    owner = get_user_model().objects.get(username="eval")
    chosen = topics(set(docs.values()))
    Report.objects.filter(notebook=notebook).delete()
    cited = relevant = reached = titles = titled_ok = title_quotes = citations = sections = words = leads = 0
    samples: list[str] = []
    for n, (_qid, claim, wanted) in enumerate(chosen):
        report = Report.objects.create(notebook=notebook, owner=owner, topic=claim, options={"length": LENGTH})
        report_generate(report_id=str(report.id))
        report.refresh_from_db()
        if report.status != Report.Status.COMPLETED:
            samples.append(f"- *{claim}*: {report.status} {report.error}")
            continue
        chunk_ids = {int(c["chunk_id"]) for c in report.citations}
        texts = dict(Chunk.objects.filter(id__in=chunk_ids).values_list("id", "text"))
        hits = [docs.get(c["source_id"]) in wanted for c in report.citations]
        cited += len(hits)
        relevant += sum(hits)
        reached += any(hits)
        citations += len(report.citations)
        title_quotes += sum(
            bool(c["source_title"]) and _norm(c["quote"]).startswith(_norm(c["source_title"])) for c in report.citations
        )
        by_number = {c["number"]: int(c["chunk_id"]) for c in report.citations}
        for heading, numbers in section_citations(report.markdown).items():
            titles += 1
            phrase = _norm(heading)
            titled_ok += any(phrase in _norm(texts.get(by_number.get(k, -1), "")) for k in numbers)
        introduction = report.markdown.split("## Introduction", 1)[-1].split("\n## ", 1)[0]
        leads += bool(re.search(r"The sources (?:dis)?agree on .*\[\d+\]", introduction))
        sections += len(report.sections)
        words += report.word_count
        if n < 3:
            samples.append(f"- *{claim}* → sections: {'; '.join(report.sections)}")
    done = max(1, len(chosen))
    return {
        "topics": float(len(chosen)),
        "relevant share of cited passages": relevant / max(1, cited),
        "reports citing a relevant abstract": reached / done,
        "section titles found in a cited passage": titled_ok / max(1, titles),
        "citations quoting a source title": float(title_quotes),
        "leads citing an agreement or a disagreement": leads / done,
        "citations per report": citations / done,
        "sections per report": sections / done,
        "words per report": words / done,
    }, samples


def run(args: argparse.Namespace) -> str:
    notebook = scifact.scifact_notebook(limit=args.limit)
    docs = scifact.doc_ids(notebook)
    after, samples = measure(notebook, docs)
    lines = [
        f"## Offline reports on SciFact train ({int(after['topics'])} claims as topics, length {LENGTH}, "
        f"{len(docs)} abstracts in the notebook)",
        "",
        "| measure | before (ca94cac) | now |",
        "| --- | ---: | ---: |",
    ]
    for name, value in after.items():
        if name == "topics":
            continue
        before = BEFORE.get(name)
        shown = "" if before is None else f"{before:.3f}"
        lines.append(f"| {name} | {shown} | {value:.3f} |")
    lines += ["", "Sections of the first reports (to read):", *samples]
    return "\n".join(lines)
