"""Object extraction for composites (OE-SIR, paper 000): object proposals or detector boxes, their
embeddings and whitening, and, for a query whose host is known, the regions the host does not
explain (Eq. 9). `stage.ObjectStage` is the entry point; retrieval and fusion are in `imgprov.search`."""
