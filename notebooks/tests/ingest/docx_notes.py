"""A Word file with footnotes, endnotes, a comment, a text box and headers, built part by part as
Word writes them (python-docx has no API to write notes, so their parts are added to its package)."""

import io

import docx
from docx.opc.constants import CONTENT_TYPE as CT
from docx.opc.constants import RELATIONSHIP_TYPE as RT
from docx.opc.packuri import PackURI
from docx.opc.part import Part
from lxml import etree

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
FOOTNOTES = [
    "Measured with a calibrated hygrometer at the Svalbard field station in 2019.",
    "The mosses were identified by Dr Ingrid Halvorsen from pressed specimens.",
]
ENDNOTE = "Raw counts of lichen colonies are archived with the Norwegian Polar Institute."
COMMENT = "Check whether the permafrost thaw depth was measured in August or September."
BODY_TOPICS = [
    "Transects were walked each July along the fjord's northern slope",
    "Plots near the glacier snout had bare gravel and few vascular plants",
    "Summer temperatures at the station rose by about one degree per decade",
    "Grazing exclosures were fenced in 2009 and left untouched since",
]
TEXT_BOX = "Key figure: reindeer grazing halves the cover of fruticose lichens."


def _notes(tag: str, texts: list[str]) -> bytes:
    separators = (
        f'<w:{tag} w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:{tag}>'
        f'<w:{tag} w:type="continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/></w:r></w:p></w:{tag}>'
    )
    notes = "".join(
        f'<w:{tag} w:id="{i}"><w:p><w:r><w:{tag}Ref/></w:r><w:r><w:t xml:space="preserve"> {text}</w:t></w:r></w:p>'
        f"</w:{tag}>"
        for i, text in enumerate(texts, start=1)
    )
    declaration = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    return f'{declaration}<w:{tag}s xmlns:w="{W}">{separators}{notes}</w:{tag}s>'.encode()


def _reference(paragraph: object, tag: str, note_id: int) -> None:
    run = etree.fromstring(f'<w:r xmlns:w="{W}"><w:{tag}Reference w:id="{note_id}"/></w:r>')
    paragraph._p.append(run)  # type: ignore[attr-defined]


def tundra_docx() -> bytes:
    document = docx.Document()
    document.core_properties.title = "Microsoft Word - tundra_v3.docx"
    document.add_heading("Lichen cover on the Arctic tundra", level=1)
    first = document.add_paragraph("Lichen cover fell by a third between the two surveys.")
    _reference(first, "footnote", 1)
    second = document.add_paragraph("Moss cover rose where the snow lay longest.")
    _reference(second, "footnote", 2)
    _reference(second, "endnote", 1)
    document.add_comment(first.runs, text=COMMENT, author="Reviewer Two", initials="R2")
    # Enough body that the notes land in chunks of their own, as they would in a real paper.
    for topic in BODY_TOPICS:
        document.add_paragraph(" ".join(f"{topic} (observation {i})." for i in range(12)))
    box = document.add_paragraph()
    box._p.append(
        etree.fromstring(
            f'<w:r xmlns:w="{W}" xmlns:v="urn:schemas-microsoft-com:vml"><w:pict><v:shape><v:textbox>'
            f"<w:txbxContent><w:p><w:r><w:t>{TEXT_BOX}</w:t></w:r></w:p></w:txbxContent>"
            "</v:textbox></v:shape></w:pict></w:r>"
        )
    )
    section = document.sections[0]
    section.header.paragraphs[0].text = "Arctic Ecology Working Paper, draft for the field team"
    section.footer.paragraphs[0].text = "Page 1"  # a bare page label: not content
    package = document.part.package
    for tag, texts, content_type, reltype in (
        ("footnote", FOOTNOTES, CT.WML_FOOTNOTES, RT.FOOTNOTES),
        ("endnote", [ENDNOTE], CT.WML_ENDNOTES, RT.ENDNOTES),
    ):
        part = Part(PackURI(f"/word/{tag}s.xml"), content_type, _notes(tag, texts), package)
        document.part.relate_to(part, reltype)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()
