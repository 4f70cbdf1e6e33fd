"""`imgprov migrate`: copy a collection from one store to another (embedded <-> distributed).

Images keep their ids, paths, times, features, embeddings, objects and credentials, so searches
give the same answers in both stores; nothing is extracted again. Images are copied in batches,
each one write of the target store: an interrupted copy keeps every finished batch and running
it again continues where it stopped, without duplicates. At the end the image and vector counts
of both stores are compared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from imgprov.errors import ImgprovError
from imgprov.storage.batches import batched
from imgprov.storage.presets import NO_GLOBAL, NO_OBJECTS
from imgprov.storage.protocol import Store, WritableStore
from imgprov.storage.records import CollectionPresets, ImageRecord, NewImage


class MigrationError(ImgprovError):
    """The target cannot receive the source's collection, or the copy does not match it."""


@dataclass(frozen=True)
class MigrationReport:
    """copied: images copied by this run; already: images a previous run had copied."""

    copied: int
    already: int
    images: int
    vectors: dict[str, int]


def source_presets(source: Store) -> CollectionPresets:
    """The presets a target must be created with to hold the source's vectors."""
    return CollectionPresets(
        local_features=source.feature_conf.name,
        local_index=source.local_conf.name,
        local_storage=source.local_storage.name,
        global_descriptor=source.global_conf.name if source.global_conf is not None else NO_GLOBAL,
        global_index=source.global_set.conf.name if source.global_set is not None else None,
        objects=source.object_conf.name if source.object_conf is not None else NO_OBJECTS,
    )


def migrate(
    source: Store,
    target: WritableStore,
    *,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> MigrationReport:
    """Copy every image of `source` missing from `target` (opened with `source_presets`)."""
    records = source.catalogue.all_images()
    wanted = {record.id: record for record in records}
    present = target.catalogue.all_images()
    foreign = [record for record in present if _differs(record, wanted.get(record.id))]
    if foreign:
        raise MigrationError(
            f"{target.root} already holds {len(foreign)} images that are not the source's "
            f"(first: id {foreign[0].id}, {foreign[0].path}); migrate into a new collection"
        )
    if not present and source.object_whitening is not None:
        trained_on = int(source.catalogue.meta("objects.whitening.trained_on", "0") or 0)
        target.adopt_whitening(source.object_whitening, trained_on)
    done = {record.id for record in present}
    todo = [record for record in records if record.id not in done]
    for batch in batched(todo, batch_size):
        target.apply(add=list(image_copies(source, batch)))
        if progress is not None:
            progress(len(batch))
    report = MigrationReport(
        copied=len(todo),
        already=len(done),
        images=target.catalogue.image_count(),
        vectors=vector_counts(target),
    )
    expected = (source.catalogue.image_count(), vector_counts(source))
    if (report.images, report.vectors) != expected:
        raise MigrationError(
            f"{target.root} holds {report.images} images and vectors {report.vectors} after the copy, "
            f"the source {expected[0]} and {expected[1]}"
        )
    return report


def vector_counts(store: Store) -> dict[str, int]:
    """Vectors per set a search can find: local, and global and objects when the store has them."""
    indexes = {"local": store.local_index(), "global": store.global_index(), "objects": store.object_index()}
    return {name: index.ntotal for name, index in indexes.items() if index is not None}


def _differs(copied: ImageRecord, original: ImageRecord | None) -> bool:
    return original is None or (copied.path, copied.sha256) != (original.path, original.sha256)


def image_copies(source: Store, records: list[ImageRecord]) -> Iterator[NewImage]:
    """The images of `records` as the target store's `apply` takes them, with their ids, stored
    features (decoded), embeddings, objects and credentials; nothing is extracted again."""
    ids = [record.id for record in records]
    embeddings = source.embeddings(ids)
    objects = source.objects(ids) if source.object_set is not None else {}
    credentials = source.credentials(ids)
    for record in records:
        features = source.local_features(record.id)
        if features is None:
            raise MigrationError(f"{source.root}: image {record.id} ({record.path}) has no local features")
        yield NewImage(
            path=record.path,
            sha256=record.sha256,
            size_bytes=record.size_bytes,
            width=record.width,
            height=record.height,
            format=record.format,
            mtime=record.mtime,
            features=features,
            embedding=embeddings.get(record.id),
            credentials=credentials.get(record.id),
            objects=objects.get(record.id),
            image_id=record.id,
            indexed_at=record.indexed_at,
        )
