"""Content credentials (C2PA): read and validate an asset's manifest, compare a query's credentials with
a matched original's, and write a provenance report.

`read_manifest` (c2pa_reader) gives `ContentCredentials` or None; `compare_credentials` (agreement)
gives an `Agreement`; `build_report` (report) gives the report document. The c2pa SDK is imported only
when a manifest is actually read or signed.
"""

from imgprov.provenance.agreement import Agreement, AgreementVerdict, compare_credentials
from imgprov.provenance.c2pa_reader import (
    DEFAULT_TIMEOUT_S,
    mime_type_for,
    read_manifest,
    read_manifest_file,
)
from imgprov.provenance.credentials import (
    Action,
    ContentCredentials,
    CredentialState,
    Ingredient,
    SignerIdentity,
)
from imgprov.provenance.report import (
    MatchedOriginal,
    Relationship,
    SigningCredentials,
    build_report,
    sign_report,
)
from imgprov.provenance.trust import TrustAnchors, TrustAnchorsError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "Action",
    "Agreement",
    "AgreementVerdict",
    "ContentCredentials",
    "CredentialState",
    "Ingredient",
    "MatchedOriginal",
    "Relationship",
    "SignerIdentity",
    "SigningCredentials",
    "TrustAnchors",
    "TrustAnchorsError",
    "build_report",
    "compare_credentials",
    "mime_type_for",
    "read_manifest",
    "read_manifest_file",
    "sign_report",
]
