"""Three short documents on unrelated topics, chunked and embedded the way ingestion does it."""

from __future__ import annotations

from collections.abc import Sequence

from notebooks.ingest.chunking import approximate_token_counts, chunk_text
from notebooks.ingest.embedding import get_embedder
from notebooks.ingest.extract import PageText
from reports.generation.types import Passage

PHOTOSYNTHESIS_PAGES = (
    "Photosynthesis is the process by which green plants, algae and some bacteria turn light energy "
    "into chemical energy. The reactions take place in chloroplasts, small organelles packed with the "
    "green pigment chlorophyll. Chlorophyll absorbs red and blue light strongly and reflects green light, "
    "which is why leaves look green. In the light-dependent reactions, water molecules are split and "
    "oxygen is released as a by-product. The energy captured from light is stored briefly in ATP and "
    "NADPH, two carrier molecules that power the rest of the process.\n\n"
    "The light-dependent reactions happen in the thylakoid membranes of the chloroplast. Photosystem II "
    "absorbs photons and passes excited electrons along an electron transport chain. The flow of "
    "electrons pumps protons across the thylakoid membrane, and ATP synthase uses that gradient to make "
    "ATP. Photosystem I then re-energises the electrons to reduce NADP+ to NADPH.",
    "The Calvin cycle uses ATP and NADPH to fix carbon dioxide from the air into sugar. The enzyme "
    "RuBisCO attaches carbon dioxide to a five-carbon sugar, ribulose bisphosphate. RuBisCO is probably "
    "the most abundant protein on Earth, yet it works slowly and sometimes grabs oxygen instead of carbon "
    "dioxide. That wasteful side reaction, called photorespiration, increases in hot and dry weather.\n\n"
    "Plants in hot climates evolved C4 and CAM photosynthesis to limit photorespiration. C4 plants such "
    "as maize concentrate carbon dioxide around RuBisCO in special bundle sheath cells. CAM plants such as "
    "cacti open their stomata at night and store carbon dioxide as malic acid until daylight returns. "
    "The rate of photosynthesis depends on light intensity, carbon dioxide concentration and temperature. "
    "Photosynthesis supplies almost all of the oxygen in the atmosphere and the chemical energy in food "
    "chains.",
)

VOLCANOES = (
    "A volcano is an opening in the crust of the Earth through which molten rock, ash and gases escape. "
    "Molten rock below the surface is called magma, and once it erupts onto the surface it is called "
    "lava. Most volcanoes form along the boundaries of tectonic plates, where plates pull apart or one "
    "plate sinks beneath another. The Pacific Ring of Fire holds roughly three quarters of the active "
    "volcanoes on Earth.\n\n"
    "The style of an eruption depends mostly on the viscosity and gas content of the magma. Basaltic "
    "magma is runny and low in silica, so gas escapes easily and eruptions are effusive, with long lava "
    "flows like those of Hawaii. Magma rich in silica is sticky and traps gas, so pressure builds until "
    "the volcano explodes. Explosive eruptions throw ash columns many kilometres high and can send "
    "pyroclastic flows racing down the slopes at hundreds of kilometres per hour.\n\n"
    "Shield volcanoes are broad and gently sloping because they are built from fluid basaltic lava. "
    "Stratovolcanoes such as Mount Fuji are steep cones of alternating lava and ash layers. Volcanic ash "
    "disrupts air travel, as the 2010 eruption of Eyjafjallajokull in Iceland showed. Large eruptions can "
    "cool the global climate for a year or two when sulfur dioxide forms aerosols in the stratosphere. "
    "Volcanologists monitor earthquakes, ground swelling and gas emissions to forecast eruptions. Volcanic "
    "soils are very fertile, which is one reason people continue to live near active volcanoes.",
)

ROMAN_ROADS = (
    "The Romans built a network of roads that eventually stretched more than 80,000 kilometres across "
    "their empire. The first great road, the Via Appia, was begun in 312 BC to link Rome with Capua in "
    "the south. Roman roads were built first for the army, so that legions could march quickly to any "
    "frontier. Merchants, officials and messengers soon used them as well, and trade followed the "
    "legions.\n\n"
    "Roman engineers laid roads in layers. A trench was dug and filled with large stones, then with "
    "gravel and sand bound in lime mortar. The surface was paved with tightly fitted blocks of basalt or "
    "other hard stone. Roads were cambered so that rainwater drained into ditches along both sides. "
    "Surveyors used a groma to lay out remarkably straight lines over long distances.\n\n"
    "Milestones stood along the main roads and recorded the distance to the nearest city. The cursus "
    "publicus, a state courier service, kept relay stations with fresh horses along the routes. "
    "Travellers could rest at inns called mansiones, spaced about a day's journey apart. Many modern "
    "highways in Italy, France and Britain still follow the routes of Roman roads. The saying that all "
    "roads lead to Rome reflects how the network tied the provinces to the capital.",
)

TOPICS = ("photosynthesis", "volcano", "roman")


def documents() -> list[tuple[str, str, str, list[PageText]]]:
    """(source_id, title, text, pages) for each document; only the first has pages."""
    text = ""
    pages: list[PageText] = []
    for number, page in enumerate(PHOTOSYNTHESIS_PAGES, start=1):
        if text:
            text += "\n\n"
        pages.append(PageText(number=number, text=page, char_start=len(text)))
        text += page
    return [
        ("src-photo", "How plants capture light", text, pages),
        ("src-volcano", "Volcanoes and eruptions", VOLCANOES[0], []),
        ("src-roads", "The Roman road network", ROMAN_ROADS[0], []),
    ]


def make_passages(
    embedder: str | None = "hashing", *, max_tokens: int = 80, extra: Sequence[tuple[str, str, str]] = ()
) -> list[Passage]:
    """Chunks of every document (plus ``extra`` (source_id, title, text) ones), in source order."""
    docs = documents() + [(sid, title, text, []) for sid, title, text in extra]
    raw: list[tuple[str, str, int, int | None, str]] = []
    for source_id, title, text, pages in docs:
        chunks = chunk_text(
            text, pages, max_tokens=max_tokens, overlap_tokens=12, count_tokens=approximate_token_counts
        )
        raw.extend((source_id, title, c.position, c.page, c.text) for c in chunks)
    vectors = get_embedder(embedder).embed([r[4] for r in raw]) if embedder else None
    return [
        Passage(
            source_id=source_id,
            source_title=title,
            chunk_id=f"{source_id}:{position}",
            position=position,
            page=page,
            text=chunk,
            score=0.0,
            embedding=None if vectors is None else vectors[i],
        )
        for i, (source_id, title, position, page, chunk) in enumerate(raw)
    ]
