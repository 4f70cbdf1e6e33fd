"""Content credentials: images signed here with a generated certificate chain, then read back signed,
trusted, tampered, stripped, re-encoded, unsigned and broken; agreement, the report, and an original
found by content search from a stripped and edited copy."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imgprov import presets
from imgprov.indexing.pipeline import index_paths
from imgprov.provenance import (
    AgreementVerdict,
    ContentCredentials,
    CredentialState,
    MatchedOriginal,
    SigningCredentials,
    TrustAnchors,
    TrustAnchorsError,
    build_report,
    compare_credentials,
    mime_type_for,
    read_manifest,
    read_manifest_file,
    sign_report,
)
from imgprov.provenance.jumbf import carries_credentials, extract_manifest_store, manifest_store_spans
from imgprov.provenance.report import REPORT_ASSERTION, REPORT_SCHEMA
from imgprov.search.pipeline import search
from imgprov.storage import open_store, store_writer
from tests.c2pa_chain import (
    IngredientSource,
    SigningChain,
    created_action,
    edited_action,
    encode,
    make_signing_chain,
    opened_action,
    placed_action,
    reencoded,
    sign_image,
    stripped,
    tampered_manifest_signature,
    tampered_manifest_text,
    tampered_pixels,
)
from tests.support import jpeg, photo

INVALID = CredentialState.INVALID
VALID_UNTRUSTED = CredentialState.VALID_UNTRUSTED
TRUSTED = CredentialState.TRUSTED


def small_photo(name: str, long_side: int = 320) -> Image.Image:
    image = Image.fromarray(photo(name))
    image.thumbnail((long_side, long_side))
    return image


def read(data: bytes, mime_type: str = "image/jpeg", trust: TrustAnchors | None = None):
    """In-process reads keep the suite fast; the child-process path has its own tests."""
    return read_manifest(data, mime_type, trust=trust, timeout_s=None)


def codes(credentials: ContentCredentials) -> set[str]:
    return {error.split(":", 1)[0] for error in credentials.validation_errors}


@pytest.fixture(scope="module")
def chain() -> SigningChain:
    return make_signing_chain("Test Photo Desk", "imgprov test agency")


@pytest.fixture(scope="module")
def other_chain() -> SigningChain:
    return make_signing_chain("Someone Else", "unrelated org")


@pytest.fixture(scope="module")
def logo() -> bytes:
    return encode(Image.new("RGB", (48, 48), (200, 30, 30)), "PNG")


def sign_original(data: bytes, mime_type: str, chain: SigningChain, logo: bytes) -> bytes:
    return sign_image(
        data,
        mime_type,
        chain,
        title="original",
        actions=[
            created_action("TestCam 1.0", when="2026-01-02T03:04:05Z"),
            placed_action("logo"),
            edited_action("TestEditor", "levels"),
        ],
        ingredients=[IngredientSource("logo", "logo.png", logo, "image/png", "componentOf")],
    )


@pytest.fixture(scope="module")
def signed_jpeg(chain, logo) -> bytes:
    return sign_original(encode(small_photo("astronaut.png")), "image/jpeg", chain, logo)


@pytest.fixture(scope="module")
def signed_png(chain, logo) -> bytes:
    return sign_original(encode(small_photo("coffee.png"), "PNG"), "image/png", chain, logo)


def test_signed_image_is_valid_but_untrusted_with_signer_actions_and_ingredients(signed_jpeg):
    credentials = read(signed_jpeg)
    assert credentials.state is VALID_UNTRUSTED
    assert credentials.is_valid and not credentials.is_trusted
    assert codes(credentials) == {"signingCredential.untrusted"}
    assert credentials.signer.common_name == "Test Photo Desk"
    assert credentials.signer.subject == "CN=Test Photo Desk, O=imgprov test agency"
    assert credentials.signer.issuer == "CN=imgprov test agency test intermediate, O=imgprov test agency"
    assert credentials.signer.algorithm == "es256"
    assert credentials.claim_generator == "imgprov-testing 1.0"
    assert credentials.signing_time is None, "signed without a timestamp authority"
    assert [action.action for action in credentials.actions] == ["c2pa.created", "c2pa.placed", "c2pa.edited"]
    created, _, edited = credentials.actions
    assert (created.software_agent, created.when) == ("TestCam 1.0", "2026-01-02T03:04:05Z")
    assert created.digital_source_type.endswith("digitalCapture")
    assert (edited.software_agent, edited.description) == ("TestEditor", "levels")
    [ingredient] = credentials.ingredients
    assert (ingredient.title, ingredient.format, ingredient.relationship) == (
        "logo.png",
        "image/png",
        "componentOf",
    )
    assert credentials.active_manifest.startswith("urn:c2pa:")
    assert credentials.manifest_labels == (credentials.active_manifest,)
    assert credentials.format == "image/jpeg"


def test_summary_is_compact_and_json_ready(signed_jpeg):
    summary = read(signed_jpeg).summary()
    assert summary["state"] == "valid-untrusted"
    assert summary["signer"] == "Test Photo Desk"
    assert [action["action"] for action in summary["actions"]] == [
        "c2pa.created",
        "c2pa.placed",
        "c2pa.edited",
    ]
    assert summary["actions"][0]["softwareAgent"] == "TestCam 1.0"
    assert summary["ingredients"] == [{"title": "logo.png", "relationship": "componentOf"}]
    assert summary["errors"] == ["signingCredential.untrusted"]
    assert "manifest_store" not in summary
    json.dumps(summary)


def test_the_signers_root_as_trust_anchor_makes_it_trusted(signed_jpeg, chain):
    credentials = read(signed_jpeg, trust=chain.anchors())
    assert credentials.state is TRUSTED and credentials.is_trusted
    assert credentials.trust_list == "user_anchors"
    assert credentials.validation_errors == ()


def test_another_organisations_anchor_leaves_the_signer_untrusted(signed_jpeg, other_chain):
    assert read(signed_jpeg, trust=other_chain.anchors()).state is VALID_UNTRUSTED


@pytest.mark.parametrize("with_anchor", [False, True])
@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_changed_pixels_are_invalid_and_never_trusted(signed_jpeg, signed_png, chain, fmt, with_anchor):
    signed, mime = (signed_jpeg, "image/jpeg") if fmt == "jpeg" else (signed_png, "image/png")
    credentials = read(tampered_pixels(signed), mime, chain.anchors() if with_anchor else None)
    assert credentials.state is INVALID
    assert not credentials.is_valid and not credentials.is_trusted
    assert "assertion.dataHash.mismatch" in codes(credentials)
    assert credentials.signer.common_name == "Test Photo Desk", "what it claims is still shown"


@pytest.mark.parametrize("with_anchor", [False, True])
def test_a_changed_manifest_is_invalid_and_never_trusted(signed_jpeg, chain, with_anchor):
    trust = chain.anchors() if with_anchor else None
    forged_agent = read(tampered_manifest_text(signed_jpeg, b"TestEditor", b"TestEditoR"), trust=trust)
    assert forged_agent.state is INVALID
    assert "assertion.hashedURI.mismatch" in codes(forged_agent)
    broken_signature = read(tampered_manifest_signature(signed_jpeg), trust=trust)
    assert broken_signature.state is INVALID
    assert "claimSignature.mismatch" in codes(broken_signature)


def test_a_changed_png_manifest_is_invalid(signed_png, chain):
    credentials = read(tampered_manifest_signature(signed_png), "image/png", chain.anchors())
    assert credentials.state is INVALID


def test_stripped_reencoded_and_unsigned_images_have_no_credentials(signed_jpeg, signed_png):
    assert read(stripped(signed_jpeg)) is None
    assert read(stripped(signed_png), "image/png") is None
    assert read(reencoded(signed_jpeg)) is None
    assert read(reencoded(signed_png, "PNG"), "image/png") is None
    assert read(encode(small_photo("chelsea.png"))) is None
    assert not carries_credentials(reencoded(signed_jpeg))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 100,
        bytes(range(256)) * 40,
        b"\xff\xd8\xff\xe0garbage",
        b"\x89PNG\r\n\x1a\n" + bytes(64),
    ],
    ids=["empty", "zeros", "bytes", "jpeg-header", "png-header"],
)
def test_garbage_without_a_store_is_none(data):
    assert read(data) is None
    assert read(data, "image/png") is None


def test_garbage_around_a_store_marker_is_reported_not_raised(signed_jpeg):
    store = extract_manifest_store(signed_jpeg)
    for data in (store, b"junk" + store, signed_jpeg[: len(signed_jpeg) // 20]):
        credentials = read(data)
        assert credentials is None or credentials.state in (INVALID, CredentialState.UNVERIFIED)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.floats(0.0, 1.0, exclude_max=True), mask=st.integers(1, 255))
def test_a_changed_store_byte_never_raises_nor_verifies_with_changed_claims(signed_jpeg, chain, offset, mask):
    [(start, end)] = manifest_store_spans(signed_jpeg)
    position = start + int(offset * (end - start))
    data = signed_jpeg[:position] + bytes([signed_jpeg[position] ^ mask]) + signed_jpeg[position + 1 :]
    credentials = read(data, trust=chain.anchors())
    if credentials is not None and credentials.is_valid:
        original = read(signed_jpeg, trust=chain.anchors())
        assert (credentials.signer, credentials.actions, credentials.ingredients) == (
            original.signer,
            original.actions,
            original.ingredients,
        ), "a byte that changes what the manifest claims must make it invalid"


def test_a_remote_only_manifest_is_unverified_and_not_fetched(chain):
    data = sign_image(
        encode(small_photo("rocket.jpg")),
        "image/jpeg",
        chain,
        title="remote",
        actions=[created_action("TestCam")],
        remote_url="https://manifests.invalid/remote.c2pa",
    )
    credentials = read(data)
    assert credentials.state is CredentialState.UNVERIFIED
    assert "remote.c2pa" in credentials.validation_errors[0]


def test_the_raw_store_is_the_embedded_jumbf_that_c2pa_reads_back(signed_jpeg, signed_png):
    import c2pa

    for signed, mime in ((signed_jpeg, "image/jpeg"), (signed_png, "image/png")):
        credentials = read(signed, mime)
        assert credentials.raw_store[4:8] == b"jumb"
        with c2pa.Reader("application/c2pa", io.BytesIO(credentials.raw_store)) as reader:
            store = json.loads(reader.json())
        assert store["active_manifest"] == credentials.active_manifest


def test_the_stored_store_verifies_the_original_file_and_no_copy_of_it(signed_jpeg):
    raw_store = read(signed_jpeg).raw_store
    again = read_manifest(signed_jpeg, "image/jpeg", timeout_s=None, sidecar=raw_store)
    assert again.state is VALID_UNTRUSTED
    for copy in (stripped(signed_jpeg), reencoded(signed_jpeg)):
        assert read_manifest(copy, "image/jpeg", timeout_s=None, sidecar=raw_store).state is INVALID


def test_credentials_round_trip_through_json(signed_jpeg):
    credentials = read(signed_jpeg)
    document = json.loads(json.dumps(credentials.to_json()))
    assert document["manifest_store"]["active_manifest"] == credentials.active_manifest
    assert ContentCredentials.from_json(document, credentials.raw_store) == credentials


def test_the_child_process_read_gives_the_same_credentials(signed_jpeg, chain):
    trust = chain.anchors()
    assert read_manifest(signed_jpeg, "JPEG", trust=trust) == read(signed_jpeg, trust=trust)
    assert read_manifest(stripped(signed_jpeg), "image/jpeg") is None


def test_a_read_that_exceeds_its_time_is_unverified(signed_jpeg):
    credentials = read_manifest(signed_jpeg, "image/jpeg", timeout_s=0.001)
    assert credentials.state is CredentialState.UNVERIFIED
    assert "did not finish" in credentials.validation_errors[0]


def test_read_manifest_file_uses_the_suffix(tmp_path, signed_png):
    path = tmp_path / "original.png"
    path.write_bytes(signed_png)
    assert read_manifest_file(path, timeout_s=None).state is VALID_UNTRUSTED
    assert read_manifest_file(tmp_path / "missing.png", timeout_s=None) is None
    assert mime_type_for("JPEG") == mime_type_for(".jpg") == "image/jpeg"
    assert mime_type_for("image/png") == "image/png"
    assert mime_type_for("BMP") is None


def test_trust_anchors_files_are_checked(tmp_path, chain):
    path = tmp_path / "anchors.pem"
    path.write_bytes(chain.root_pem + chain.intermediate_pem)
    anchors = TrustAnchors.from_file(path)
    assert anchors.subjects[0].startswith("CN=imgprov test agency test root")
    assert len(anchors.subjects) == 2
    with pytest.raises(TrustAnchorsError, match="cannot read"):
        TrustAnchors.from_file(tmp_path / "missing.pem")
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(TrustAnchorsError, match="not PEM"):
        TrustAnchors.from_file(tmp_path / "bad.pem")


@pytest.fixture(scope="module")
def edited_by_newsroom(signed_jpeg, chain) -> bytes:
    """A newsroom's edit of the signed original, signed with the original as its parentOf ingredient."""
    edited = encode(Image.open(io.BytesIO(signed_jpeg)).rotate(4), quality=80)
    return sign_image(
        edited,
        "image/jpeg",
        chain,
        title="edited.jpg",
        actions=[opened_action("parent"), edited_action("NewsEdit", "rotated")],
        ingredients=[IngredientSource("parent", "original.jpg", signed_jpeg, "image/jpeg", "parentOf")],
    )


def test_agreement_without_query_credentials(signed_jpeg):
    agreement = compare_credentials(None, read(signed_jpeg))
    assert agreement.verdict is AgreementVerdict.NO_QUERY_CREDENTIALS and not agreement.agrees


def test_agreement_when_the_query_is_the_signed_original(signed_jpeg):
    agreement = compare_credentials(read(signed_jpeg), read(signed_jpeg))
    assert agreement.verdict is AgreementVerdict.SAME_MANIFEST and agreement.agrees
    assert agreement.same_signer is True


def test_agreement_when_the_query_names_the_original_as_parent(signed_jpeg, edited_by_newsroom):
    query = read(edited_by_newsroom)
    assert query.state is VALID_UNTRUSTED
    assert len(query.manifest_labels) == 2
    [parent] = query.ingredients
    assert parent.relationship == "parentOf" and parent.hash
    agreement = compare_credentials(query, read(signed_jpeg))
    assert agreement.verdict is AgreementVerdict.DERIVED_FROM_ORIGINAL and agreement.agrees
    assert (agreement.relationship, agreement.same_signer) == ("parentOf", True)


def test_agreement_when_a_stripped_copy_was_re_signed_by_someone_else(signed_jpeg, other_chain):
    forged = sign_image(
        stripped(signed_jpeg),
        "image/jpeg",
        other_chain,
        title="mine.jpg",
        actions=[created_action("ForgerCam")],
    )
    query = read(forged)
    assert query.state is VALID_UNTRUSTED, "a forgery can verify: only trust anchors tell signers apart"
    agreement = compare_credentials(query, read(signed_jpeg))
    assert agreement.verdict is AgreementVerdict.UNRELATED and not agreement.agrees
    assert agreement.same_signer is False
    assert "different signer" in agreement.detail


def test_agreement_ignores_invalid_query_credentials(signed_jpeg):
    query = read(tampered_pixels(signed_jpeg))
    agreement = compare_credentials(query, read(signed_jpeg))
    assert agreement.verdict is AgreementVerdict.QUERY_NOT_VERIFIED
    assert agreement.same_signer is None


def test_agreement_when_the_original_has_no_verified_credentials(signed_jpeg):
    query = read(signed_jpeg)
    assert compare_credentials(query, None).verdict is AgreementVerdict.ORIGINAL_NOT_VERIFIED
    tampered = read(tampered_pixels(signed_jpeg))
    assert compare_credentials(query, tampered).verdict is AgreementVerdict.ORIGINAL_NOT_VERIFIED


def matched(
    path: str, data: bytes, relationship: str, credentials: ContentCredentials | None
) -> MatchedOriginal:
    return MatchedOriginal(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        mime_type="image/jpeg",
        relationship=relationship,
        credentials=credentials,
        role="host" if relationship == "parentOf" else "donor",
        score=0.97,
        regions=({"query_box": [0, 0, 10, 10], "match_box": [5, 5, 15, 15], "score": 0.9, "inliers": 40},),
    )


def test_the_report_names_query_matches_and_c2pa_ingredients(signed_jpeg):
    donor = encode(small_photo("coffee.png"))
    originals = [
        matched("/collection/astronaut.jpg", signed_jpeg, "parentOf", read(signed_jpeg)),
        matched("/collection/coffee.jpg", donor, "componentOf", None),
    ]
    query = reencoded(signed_jpeg)
    report = build_report("shared.jpg", hashlib.sha256(query).hexdigest(), read(query), originals)
    assert report["schema"] == REPORT_SCHEMA
    assert report["generator"]["name"] == "imgprov"
    assert report["query"] == {
        "name": "shared.jpg",
        "sha256": hashlib.sha256(query).hexdigest(),
        "credentials": None,
    }
    host, donor_entry = report["matches"]
    assert host["credentials"]["signer"] == "Test Photo Desk"
    assert host["credentials"]["state"] == "valid-untrusted"
    assert (host["role"], host["relationship"], host["regions"]) == (
        "host",
        "parentOf",
        list(originals[0].regions),
    )
    assert host["agreement"]["verdict"] == "no-query-credentials"
    assert donor_entry["credentials"] is None
    parent, component = report["ingredients"]
    assert parent == {
        "title": "astronaut.jpg",
        "format": "image/jpeg",
        "relationship": "parentOf",
        "instance_id": read(signed_jpeg).instance_id,
        "document_id": None,
        "active_manifest": read(signed_jpeg).active_manifest,
        "alg": "sha256",
        "hash": base64.b64encode(hashlib.sha256(signed_jpeg).digest()).decode(),
    }
    assert (component["relationship"], component["active_manifest"]) == ("componentOf", None)
    json.dumps(report)


def test_the_report_rejects_two_parents_and_unknown_relationships(signed_jpeg):
    parent = matched("/a.jpg", signed_jpeg, "parentOf", None)
    with pytest.raises(ValueError, match="at most one"):
        build_report("q.jpg", "00", None, [parent, parent])
    with pytest.raises(ValueError, match="relationship"):
        matched("/a.jpg", signed_jpeg, "host", None)


def test_a_signed_report_is_a_sidecar_that_verifies_and_names_the_originals(signed_jpeg, chain):
    query = reencoded(signed_jpeg)
    original = matched("/collection/astronaut.jpg", signed_jpeg, "parentOf", read(signed_jpeg))
    report = build_report("shared.jpg", hashlib.sha256(query).hexdigest(), None, [original])
    signing = SigningCredentials(chain.certificate_chain, chain.private_key_pem)
    sidecar = sign_report(report, query, "image/jpeg", [(original, signed_jpeg)], signing)
    credentials = read_manifest(query, "image/jpeg", trust=chain.anchors(), timeout_s=None, sidecar=sidecar)
    assert credentials.state is TRUSTED
    assert [action.action for action in credentials.actions] == ["c2pa.opened"]
    [ingredient] = credentials.ingredients
    assert (ingredient.title, ingredient.relationship) == ("astronaut.jpg", "parentOf")
    assert ingredient.active_manifest == original.credentials.active_manifest
    assert (
        compare_credentials(credentials, original.credentials).verdict
        is AgreementVerdict.DERIVED_FROM_ORIGINAL
    )
    assertions = json.loads(credentials.manifest_store)["manifests"][credentials.active_manifest][
        "assertions"
    ]
    [stored] = [assertion["data"] for assertion in assertions if assertion["label"] == REPORT_ASSERTION]
    assert stored["matches"][0]["path"] == "/collection/astronaut.jpg"
    other_query = reencoded(signed_jpeg, quality=60)
    moved = read_manifest(other_query, "image/jpeg", timeout_s=None, sidecar=sidecar)
    assert moved.state is INVALID, "the sidecar is bound to the query's bytes"


def shared_and_edited(rgb: np.ndarray) -> np.ndarray:
    """What circulates: cropped, resized, a caption bar pasted on, recompressed twice."""
    height, width = rgb.shape[:2]
    copy = rgb[height // 12 : height - height // 10, width // 10 : width - width // 14].copy()
    copy = cv2.resize(copy, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    copy[-40:, :] = (20, 20, 160)
    return jpeg(jpeg(copy, 80), 70)


def test_a_signed_original_is_found_from_a_stripped_edited_copy_with_its_signer_and_actions(
    new_db, tmp_path, chain, logo
):
    originals = tmp_path / "originals"
    originals.mkdir()
    signed = sign_original(
        encode(Image.fromarray(photo("chelsea.png")), quality=92), "image/jpeg", chain, logo
    )
    (originals / "chelsea.jpg").write_bytes(signed)
    for name in ("coffee.png", "rocket.jpg"):
        (originals / f"{name.split('.')[0]}.jpg").write_bytes(encode(Image.fromarray(photo(name))))
    db = new_db()
    with store_writer(db) as collection:
        report = index_paths(collection, sorted(originals.iterdir()))
    assert not report.failed

    shared = encode(Image.fromarray(shared_and_edited(photo("chelsea.png"))), quality=75)
    assert read_manifest(shared, "image/jpeg") is None, "the shared copy carries no credentials"
    collection = open_store(db)
    result = search(collection, np.asarray(Image.open(io.BytesIO(shared)).convert("RGB")), presets.search())
    assert result.matches and result.matches[0].path.endswith("chelsea.jpg")

    match = result.matches[0]
    assert match.provenance == collection.credentials([match.image_id])[match.image_id].summary()
    assert match.agreement["verdict"] == "no-query-credentials"
    credentials = collection.credentials([match.image_id])[match.image_id]
    assert credentials.raw_store and credentials.raw_store in signed
    assert credentials.state is VALID_UNTRUSTED
    assert credentials.signer.common_name == "Test Photo Desk"
    assert [action.action for action in credentials.actions] == ["c2pa.created", "c2pa.placed", "c2pa.edited"]
    assert credentials.actions[0].software_agent == "TestCam 1.0"
    assert compare_credentials(None, credentials).verdict is AgreementVerdict.NO_QUERY_CREDENTIALS
    summary = credentials.summary()
    assert (summary["signer"], summary["state"]) == ("Test Photo Desk", "valid-untrusted")
    assert [action["action"] for action in summary["actions"]] == [
        "c2pa.created",
        "c2pa.placed",
        "c2pa.edited",
    ]


def test_a_signed_report_of_a_composite_without_parent_places_each_original(signed_jpeg, chain):
    donor = encode(small_photo("coffee.png"))
    originals = [
        (matched("/collection/astronaut.jpg", signed_jpeg, "componentOf", read(signed_jpeg)), signed_jpeg),
        (matched("/collection/coffee.jpg", donor, "componentOf", None), donor),
    ]
    query = encode(small_photo("chelsea.png"))
    report = build_report("composite.jpg", hashlib.sha256(query).hexdigest(), None, [m for m, _ in originals])
    signing = SigningCredentials(chain.certificate_chain, chain.private_key_pem)
    sidecar = sign_report(report, query, "image/jpeg", originals, signing)
    credentials = read_manifest(query, "image/jpeg", timeout_s=None, sidecar=sidecar)
    assert credentials.state is VALID_UNTRUSTED
    assert [action.action for action in credentials.actions] == ["c2pa.created", "c2pa.placed", "c2pa.placed"]
    assert [ingredient.title for ingredient in credentials.ingredients] == ["astronaut.jpg", "coffee.jpg"]
