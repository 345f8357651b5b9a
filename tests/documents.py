"""Real documents on distinct topics, generated in memory for the tests."""

from notebooks.ingest.samples import encrypt_pdf, make_docx, make_docx_bomb, make_pdf, wrap

VOLCANOES = [
    "Volcanoes form where magma from the mantle reaches the surface of the Earth.",
    "Basaltic lava is runny and builds broad shield volcanoes such as Mauna Loa in Hawaii.",
    "Explosive eruptions happen when gas-rich, viscous magma fragments into ash and pumice.",
    "Pyroclastic flows are fast currents of hot gas and rock that race down a volcano's flanks.",
    "Volcanologists watch ground swelling, small earthquakes and sulfur dioxide to forecast eruptions.",
    "The 1991 eruption of Pinatubo cooled the global climate by about half a degree for two years.",
]
PHOTOSYNTHESIS = [
    "Photosynthesis turns light energy, water and carbon dioxide into sugar and oxygen.",
    "Chlorophyll in the chloroplasts absorbs mostly red and blue light and reflects green.",
    "The light reactions split water and make ATP and NADPH in the thylakoid membranes.",
    "The Calvin cycle uses that ATP and NADPH to fix carbon dioxide into three-carbon sugars.",
    "The enzyme RuBisCO is probably the most abundant protein on Earth.",
    "C4 plants such as maize concentrate carbon dioxide to avoid wasteful photorespiration.",
]
ROMAN_ROADS = [
    "The Romans built more than eighty thousand kilometres of paved roads across their empire.",
    "The Via Appia, begun in 312 BC, linked Rome to Capua and later to Brindisi.",
    "A Roman road was layered: a bed of large stones, then gravel, then fitted paving slabs.",
    "Milestones along the roads recorded the distance to the next town and the emperor who paid.",
    "Legions marched about thirty kilometres a day on the roads, which sped up the army.",
    "Many modern European motorways still follow the straight lines the Roman surveyors laid out.",
]
JAZZ = [
    "Jazz grew in New Orleans in the early twentieth century from blues and ragtime.",
    "Louis Armstrong made the improvised trumpet solo the centre of the music.",
    "Bebop musicians like Charlie Parker played fast, harmonically complex lines in small groups.",
    "Miles Davis recorded Kind of Blue in 1959, an album built on modes instead of chord changes.",
    "Swing rhythm lengthens the first of each pair of eighth notes and shortens the second.",
]


def volcano_pdf() -> bytes:
    # Two pages: the page of each sentence is known.
    return make_pdf([VOLCANOES[:3], VOLCANOES[3:]], title="Volcanoes")


def photosynthesis_docx() -> bytes:
    return make_docx(PHOTOSYNTHESIS, heading="Photosynthesis")


def roman_roads_markdown() -> bytes:
    return ("# Roman roads\n\n" + "\n\n".join(ROMAN_ROADS) + "\n").encode()


def jazz_html() -> bytes:
    paragraphs = "".join(f"<p>{s}</p>" for s in JAZZ)
    return (
        "<!doctype html><html><head><title>A short history of jazz</title></head><body>"
        "<nav>Home | About | Contact</nav><article><h1>A short history of jazz</h1>"
        f"{paragraphs}</article><footer>Copyright nobody</footer></body></html>"
    ).encode()


def long_pdf(pages: int) -> bytes:
    from notebooks.ingest.samples import prose

    return make_pdf([wrap(prose(400, seed=i))[:40] for i in range(pages)])


__all__ = [
    "encrypt_pdf",
    "make_docx",
    "make_docx_bomb",
    "make_pdf",
]
