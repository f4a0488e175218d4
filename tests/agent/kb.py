"""A generated knowledge base with one needle paragraph, for the knowledge and prompt tests."""

import random

NEEDLE = (
    "Parking: free parking is available at the back of the building on Calle Larga. "
    "Enter through the green gate next to the bakery."
)
_WORDS = (
    "yoga class breathing teacher mat studio morning evening beginners advanced stretch balance "
    "posture meditation calm strength flexibility session community workshop retreat music light "
    "water towel shower locker schedule holiday gift voucher newsletter instructor"
).split()


def generated_kb(size: int = 200_000, needle_at: float = 0.75, seed: int = 7) -> str:
    rng = random.Random(seed)
    paragraphs: list[str] = []
    total = 0
    while total < size:
        sentences = [" ".join(rng.choices(_WORDS, k=rng.randint(6, 14))).capitalize() + "." for _ in range(4)]
        paragraphs.append(f"Topic {len(paragraphs)}: " + " ".join(sentences))
        total += len(paragraphs[-1]) + 2
    paragraphs.insert(int(len(paragraphs) * needle_at), NEEDLE)
    return "\n\n".join(paragraphs)
