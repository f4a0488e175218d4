"""Knowledge-base selection: whole when it fits, else the relevant chunks, never a blind cut."""

from backend.agent.knowledge import CHUNK_MAX_CHARS, select_knowledge, split_chunks, tokenize
from tests.agent.kb import NEEDLE, generated_kb


def test_small_kb_is_returned_intact():
    kb = "  Opening hours: 9 to 5.\n\nWe speak Spanish.  \n"
    assert select_knowledge(kb, "anything", 1000) == kb


def test_empty_kb_or_budget():
    assert select_knowledge("", "parking", 100) == ""
    assert select_knowledge("Some text", "parking", 0) == ""


def test_needle_found_in_large_kb_where_a_blind_cut_would_miss_it():
    kb = generated_kb()
    assert len(kb) > 199_000
    assert NEEDLE not in kb[:24_000]

    selected = select_knowledge(kb, "Hi! Is there parking near your place?", 24_000)

    assert NEEDLE in selected
    assert len(selected) <= 24_000
    assert len(selected) > 20_000  # the rest of the budget is still used


def test_selection_keeps_whole_paragraphs_in_original_order():
    kb = generated_kb()
    selected = select_knowledge(kb, "where do I park the car", 24_000)
    paragraphs = selected.split("\n\n")
    positions = [kb.index(p) for p in paragraphs]  # every piece is a whole paragraph of the KB
    assert positions == sorted(positions)
    assert all(p in kb.split("\n\n") for p in paragraphs)


def test_selection_is_deterministic():
    kb = generated_kb()
    first = select_knowledge(kb, "parking", 24_000)
    second = select_knowledge(generated_kb(), "parking", 24_000)
    assert first == second


def test_empty_query_gives_the_leading_chunks_that_fit():
    kb = generated_kb(size=20_000)
    selected = select_knowledge(kb, "", 5_000)
    assert kb.startswith(selected)
    assert 3_500 < len(selected) <= 5_000
    assert select_knowledge(kb, "?!", 5_000) == selected  # no tokens at all: same as empty


def test_equal_scores_break_ties_by_position():
    kb = "\n\n".join(["Parking on Calle Larga.", "Parking on Calle Larga.", "Other text here."])
    assert select_knowledge(kb, "parking", 30) == "Parking on Calle Larga."


def test_accents_and_case_are_folded():
    kb = "\n\n".join(
        ["Horario de atención: lunes a viernes." * 3, "Nuestra UBICACIÓN: Calle Larga 12, Valparaíso."]
    )
    selected = select_knowledge(kb, "¿cuál es la ubicacion?", 60)
    assert selected == "Nuestra UBICACIÓN: Calle Larga 12, Valparaíso."


def test_tokenize_folds_lowercases_and_stems_lightly():
    assert tokenize("Éstas PARKING, niños!") == ["esta", "park", "nino"]


def test_long_paragraph_is_split_on_sentence_boundaries():
    paragraph = " ".join(f"Sentence number {i} talks about the studio." for i in range(400))
    chunks = split_chunks(paragraph)
    assert len(chunks) > 1
    assert all(len(c) <= CHUNK_MAX_CHARS for c in chunks)
    assert all(c.endswith(".") for c in chunks)
    assert " ".join(chunks) == paragraph


def test_long_paragraph_prefers_line_boundaries_and_never_exceeds_the_limit():
    paragraph = "\n".join(f"- item {i} with a few words" for i in range(300))
    chunks = split_chunks(paragraph, 500)
    assert all(len(c) <= 500 for c in chunks)
    assert all(c.startswith("- item") for c in chunks)
    assert "\n".join(chunks) == paragraph


def test_text_without_any_boundary_is_still_bounded():
    chunks = split_chunks("x" * 4000)
    assert [len(c) for c in chunks] == [1500, 1500, 1000]


def test_budget_smaller_than_a_chunk_shrinks_the_chunks():
    kb = "Intro. " * 50 + "\n\n" + "Parking at the back of the building. " * 20
    selected = select_knowledge(kb, "parking", 200)
    assert 0 < len(selected) <= 200
    assert "Parking" in selected
