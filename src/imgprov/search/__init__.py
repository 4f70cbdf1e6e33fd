"""Search stage: the originals a query is made of (`search`), read top to bottom in `pipeline`.

`pipeline` chains the steps; `candidates` holds what they find about each collection image, `os2os`
votes (paper 002), `objects` runs the object stage (OE-SIR), `ranking` turns scored candidates into
ranked matches with their roles, and `calibration` holds the calibrated match models.
"""

from imgprov.search.pipeline import STAGES, find_candidates, search

__all__ = ["STAGES", "find_candidates", "search"]
