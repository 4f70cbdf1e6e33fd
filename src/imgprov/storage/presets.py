"""The presets a collection records in its catalogue (`meta` keys `preset.*`), in either store.

A new collection records the presets it is created with; an existing one keeps its own and refuses
others. Presets themselves are defined in `imgprov.presets`, `imgprov.extract.sscd` and
`imgprov.extract.objects.conf`; a preset named "none" turns a vector set off.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from imgprov import presets
from imgprov.errors import IndexCorrupt, IndexStoreError, PresetError
from imgprov.extract.objects.conf import ObjectConf, object_preset
from imgprov.extract.objects.embed import ObjectWhitening, raw_dim
from imgprov.extract.sscd import DEFAULT_GLOBAL, GlobalConf, global_preset
from imgprov.presets import LocalFeatureConf, LocalStorageConf, VectorIndexConf
from imgprov.storage.catalogue import SqlCatalogue
from imgprov.storage.records import CollectionPresets

NO_GLOBAL = "none"
NO_LOCAL_INDEX = "none"
NO_OBJECTS = "none"
LEGACY_LOCAL_STORAGE = "rootsift-u8"
"""What a catalogue from before local-storage presets holds: exact uint8 descriptors."""
_LEGACY = {"preset.objects": NO_OBJECTS, "preset.local_storage": LEGACY_LOCAL_STORAGE}
"""What an index made before a preset existed is, for presets newer than the first indexes:
no objects (its images have none), exact local features."""

Conf = TypeVar("Conf")


@dataclass(frozen=True)
class NoPreset:
    """The stand-in for a vector set turned off: a preset named "none"."""

    name: str = "none"


@dataclass(frozen=True)
class StorePresets:
    """The presets a catalogue records, looked up: what a store opens its vector sets with.

    global_descriptor / global_index: None without a global set; objects: None without objects.
    """

    features: LocalFeatureConf
    local_index: VectorIndexConf | NoPreset
    local_storage: LocalStorageConf
    global_descriptor: GlobalConf | None
    global_index: VectorIndexConf | None
    objects: ObjectConf | None

    @property
    def object_dim(self) -> int:
        """Dimension of the object vectors the object index holds (whitened, else raw)."""
        assert self.objects is not None
        return self.objects.whitening.dim or raw_dim(self.objects.embedding)


def read_presets(catalogue: SqlCatalogue) -> StorePresets:
    """The presets `catalogue` records (`record_presets`)."""
    with_global = catalogue.meta("preset.global", NO_GLOBAL) != NO_GLOBAL
    with_objects = catalogue.meta("preset.objects", NO_OBJECTS) != NO_OBJECTS
    return StorePresets(
        features=recorded_preset(catalogue, "preset.local_features", presets.local_features),
        local_index=recorded_preset(catalogue, "preset.local_index", local_index_or_none),
        local_storage=recorded_local_storage(catalogue),
        global_descriptor=recorded_preset(catalogue, "preset.global", global_preset) if with_global else None,
        global_index=(
            recorded_preset(catalogue, "preset.global_index", presets.global_index) if with_global else None
        ),
        objects=recorded_preset(catalogue, "preset.objects", object_preset) if with_objects else None,
    )


def record_presets(catalogue: SqlCatalogue, requested: CollectionPresets) -> None:
    """Record the presets of a new index; refuse different ones for an existing index."""
    wanted = {
        "preset.local_features": (
            requested.local_features,
            presets.local_features,
            presets.DEFAULT_LOCAL_FEATURES,
        ),
        "preset.local_index": (requested.local_index, local_index_or_none, presets.DEFAULT_LOCAL_INDEX),
        "preset.local_storage": (
            requested.local_storage,
            presets.local_storage,
            presets.DEFAULT_LOCAL_STORAGE,
        ),
        "preset.global": (requested.global_descriptor, _global_or_none, DEFAULT_GLOBAL),
        "preset.global_index": (requested.global_index, presets.global_index, presets.DEFAULT_GLOBAL_INDEX),
        "preset.objects": (requested.objects, _objects_or_none, NO_OBJECTS),
    }
    if requested.local_index == NO_LOCAL_INDEX and requested.global_descriptor == NO_GLOBAL:
        raise PresetError(
            "--vectors none needs a global descriptor (with --global none too, no stage finds candidates)"
        )
    with catalogue.transaction():
        for key, (name, lookup, default) in wanted.items():
            canonical = lookup(name).name if name is not None else None
            recorded = catalogue.meta(key)
            if recorded is None and key in _LEGACY and catalogue.image_count():
                # An index from before this preset existed: it stays what it was made as.
                recorded = _LEGACY[key]
                catalogue.set_meta(key, recorded)
            if recorded is None:
                catalogue.set_meta(key, canonical or lookup(default).name)
            elif canonical is not None and canonical != recorded:
                raise PresetError(
                    f"this index was built with {key.split('.')[1]} preset {recorded!r}, not {canonical!r}; "
                    "use another --db for a different preset"
                )


def recorded_preset(catalogue: SqlCatalogue, key: str, lookup: Callable[..., Conf]) -> Conf:
    """The preset the catalogue records under `key`, looked up by name (the default when an empty
    catalogue records none)."""
    name = catalogue.meta(key)
    if name is None:
        if catalogue.image_count():
            raise IndexCorrupt(f"{catalogue.root}: the catalogue does not record its {key}")
        return lookup()
    try:
        return lookup(name)
    except PresetError as exc:
        raise IndexStoreError(f"{catalogue.root}: {exc} (index made by another imgprov version?)") from None


def recorded_local_storage(catalogue: SqlCatalogue) -> LocalStorageConf:
    """The local-storage preset a catalogue records; one from before the preset is exact uint8."""
    if catalogue.meta("preset.local_storage") is None and catalogue.image_count():
        return presets.local_storage(LEGACY_LOCAL_STORAGE)
    return recorded_preset(catalogue, "preset.local_storage", presets.local_storage)


def local_index_or_none(name: str = presets.DEFAULT_LOCAL_INDEX) -> VectorIndexConf | NoPreset:
    """The local vector-index preset, or a stand-in named "none" for a collection without the
    feature-level index (OS2OS voting off; local features kept per image to verify shortlists)."""
    if name == NO_LOCAL_INDEX:
        return NoPreset()
    if name not in presets.LOCAL_INDEXES:
        valid = ", ".join([*sorted(presets.LOCAL_INDEXES), NO_LOCAL_INDEX])
        raise PresetError(f"unknown local-index preset {name!r}; valid: {valid}")
    return presets.local_index(name)


def _global_or_none(name: str = DEFAULT_GLOBAL) -> GlobalConf | NoPreset:
    return NoPreset() if name == NO_GLOBAL else global_preset(name)


def _objects_or_none(name: str = NO_OBJECTS) -> ObjectConf | NoPreset:
    return NoPreset() if name == NO_OBJECTS else object_preset(name)


def stored_whitening(catalogue: SqlCatalogue) -> ObjectWhitening | None:
    """The object whitening the collection learned (`meta` key `objects.whitening`), if any."""
    encoded = catalogue.meta("objects.whitening")
    return ObjectWhitening.from_bytes(base64.b64decode(encoded)) if encoded else None
