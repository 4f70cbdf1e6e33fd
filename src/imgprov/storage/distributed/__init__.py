"""The distributed store: vectors in Milvus (`milvus`), the catalogue in PostgreSQL or SQLite (`sql`,
`catalogue`), read and written through `store.DistributedStore`. Their clients are imported only
when a distributed store is opened."""
