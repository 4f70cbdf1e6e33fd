"""s3:// listings end to end: `imgprov index --ray local --list` against moto's standalone server, a
test server speaking the S3 HTTP protocol on loopback (not AWS), which boto3 reaches through the
standard `AWS_ENDPOINT_URL` setting in the workers' environment."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgprov.errors import ImageNotFound, ImageTooLarge
from imgprov.storage.embedded.collection import Collection
from tests.support import jpeg, photo
from tests.test_distributed import cli, top_match

moto_server = pytest.importorskip("moto.server", reason="moto[server] (the dev extra) is not installed")
boto3 = pytest.importorskip("boto3", reason="boto3 (the s3 extra) is not installed")

from imgprov.indexing.ray.sources import fetch  # noqa: E402

pytestmark = pytest.mark.slow  # moto's S3 server, a Ray cluster

BUCKET = "imgprov-photos"
PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")


@pytest.fixture
def s3_env(tmp_path, monkeypatch) -> Iterator[dict[str, str]]:
    """moto's S3 server on a free loopback port for one test: the environment that points boto3 at
    it (dummy credentials; no ~/.aws files), also set in this process."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        yield env
    finally:
        server.stop()


def upload_photos(photo_paths: list[Path]) -> dict[str, str]:
    """Put the photos of `PHOTOS` into a new bucket as they are; returns s3:// URL -> sha256."""
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    by_name = {path.name: path for path in photo_paths}
    uploaded = {}
    for name in PHOTOS:
        data = by_name[name].read_bytes()
        client.put_object(Bucket=BUCKET, Key=f"originals/{name}", Body=data)
        uploaded[f"s3://{BUCKET}/originals/{name}"] = hashlib.sha256(data).hexdigest()
    return uploaded


def indexed(db: Path) -> dict[str, tuple[str, float]]:
    """Path -> (sha256, mtime) of every image of an embedded index, paths as recorded."""
    collection = Collection.open(db)
    try:
        rows = collection.catalogue.connection.execute("SELECT path, sha256, mtime FROM images").fetchall()
    finally:
        collection.close()
    return {path: (sha256, mtime) for path, sha256, mtime in rows}


def test_an_s3_listing_is_indexed_under_its_urls_and_rerun_adds_nothing(tmp_path, s3_env, photo_paths):
    uploaded = upload_photos(photo_paths)
    missing_key = f"s3://{BUCKET}/originals/missing.png"
    missing_bucket = "s3://no-such-bucket/originals/coffee.png"
    listing = tmp_path / "listing.txt"
    listing.write_text("\n".join(["# bucket listing", *uploaded, missing_key, missing_bucket, ""]))
    db = tmp_path / "db"
    args = ("index", "--db", str(db), "--ray", "local", "--workers", "2", "--list", str(listing))
    env = {**os.environ, **s3_env}

    first = cli(*args, env=env)
    assert first.returncode == 1, first.stderr
    skipped = sorted(line for line in first.stderr.splitlines() if line.startswith("imgprov: skipped"))
    assert len(skipped) == 2, first.stderr
    assert skipped[0].startswith(f"imgprov: skipped {missing_key}: cannot fetch (NoSuchKey: ")
    assert skipped[1].startswith(f"imgprov: skipped {missing_bucket}: cannot fetch (NoSuchBucket: ")
    assert "indexed 4 new, 0 changed, 0 unchanged, 2 failed" in first.stderr
    images = indexed(db)
    assert {path: sha256 for path, (sha256, _) in images.items()} == uploaded
    assert all(mtime > 0 for _, mtime in images.values()), "LastModified was not recorded"
    target = f"s3://{BUCKET}/originals/coffee.png"
    assert top_match(db, jpeg(photo("coffee.png")[20:-20, 30:-30], 50)) == target

    again = cli(*args, env=env)
    assert "indexed 0 new, 0 changed, 4 unchanged, 2 failed" in again.stderr, again.stderr
    assert indexed(db) == images

    one = cli("remove", "--db", str(db), target)
    assert one.returncode == 0 and "removed 1 images" in one.stderr, one.stderr
    assert indexed(db).keys() == images.keys() - {target}
    rest = cli("remove", "--db", str(db), f"s3://{BUCKET}/originals/", f"s3://{BUCKET}/other/")
    assert rest.returncode == 1 and "removed 3 images" in rest.stderr, rest.stderr
    assert f"imgprov: not in the index: s3://{BUCKET}/other/" in rest.stderr
    assert indexed(db) == {}


def test_an_s3_object_over_the_size_limit_is_refused_before_it_is_read(s3_env, photo_paths):
    upload_photos(photo_paths)
    url = f"s3://{BUCKET}/originals/{PHOTOS[0]}"
    original = next(path for path in photo_paths if path.name == PHOTOS[0]).read_bytes()
    size = len(original)
    assert fetch(url, max_bytes=size).data == original
    with pytest.raises(ImageTooLarge) as too_large:
        fetch(url, max_bytes=size - 1)
    assert str(too_large.value) == f"{url}: {size} bytes, more than the limit of {size - 1}"
    with pytest.raises(ImageNotFound) as missing:
        fetch(f"s3://{BUCKET}/originals/none.png")
    assert str(missing.value).startswith(f"s3://{BUCKET}/originals/none.png: cannot fetch (NoSuchKey: ")
    assert "\n" not in str(missing.value)
