"""Object-level provenance of composites (OE-SIR, paper 000): object proposals, object embeddings,
splice localization against the host, object retrieval (Eq. 7, 8) and its fusion with the global
and OS2OS stages into host and donor matches. See `imgprov.objects.stage` for the entry points."""
