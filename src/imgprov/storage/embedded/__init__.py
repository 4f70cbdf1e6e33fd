"""The embedded store: one index directory holding a SQLite catalogue (`catalogue`) and FAISS vector
files (`vectors`), read and written through `collection.Collection`."""
