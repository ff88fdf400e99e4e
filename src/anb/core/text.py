"""Text helpers shared by the domains."""

from __future__ import annotations

import unicodedata


def search_key(text: str) -> str:
    """Fold case, accents and spacing so that "Bogotá", "BOGOTA" and " bogota " match."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def megabytes(size: int) -> str:
    """A size limit as players read it: 104857600 → "100 MB"."""
    return f"{size / (1024 * 1024):.3g} MB"


NO_NUL = r"^[^\x00]*$"
"""A pattern for text fields: PostgreSQL cannot store the NUL character."""
