"""imgprov: find the originals of an image, verify them and localize what was changed.

    with imgprov.open("collection") as collection:
        collection.index(["photos/"])
        result = collection.search("query.jpg")
    comparison = imgprov.compare("query.jpg", result.matches[0].path)

Importing imgprov loads nothing else: each name below is imported when first used.
"""

__version__ = "0.1.0"

_PUBLIC = {
    "open": "imgprov.api",
    "ImageCollection": "imgprov.api",
    "Removal": "imgprov.api",
    "compare": "imgprov.compare",
    "IndexReport": "imgprov.indexing.pipeline",
    "SearchResult": "imgprov.results",
    "Match": "imgprov.results",
    "MatchRegion": "imgprov.results",
    "Comparison": "imgprov.compare.comparison",
    "ChangedRegion": "imgprov.compare.regions",
    "CompareConf": "imgprov.compare.conf",
    "ContentCredentials": "imgprov.provenance.credentials",
    "ImgprovError": "imgprov.errors",
    "ImageError": "imgprov.errors",
    "PresetError": "imgprov.errors",
    "IndexStoreError": "imgprov.errors",
    "ModelMissing": "imgprov.errors",
}
"""Public name -> the module defining it. `compare` is the `imgprov.compare` package, which is callable."""

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> object:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'imgprov' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_PUBLIC[name])
    value = module if name == "compare" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
