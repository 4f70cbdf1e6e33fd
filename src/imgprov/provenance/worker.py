"""Child process of `read_manifest`: one SDK read, isolated so the parent can kill it on a timeout.

stdin: one JSON line {"mime_type", "anchors_pem", "sidecar" (base64 or null)}, then the asset bytes.
stdout: one JSON document {"credentials": ContentCredentials.to_json() or null, "raw_store": base64}.
"""

from __future__ import annotations

import base64
import json
import sys

from imgprov.provenance.c2pa_reader import read_in_process
from imgprov.provenance.trust import TrustAnchors


def main() -> int:
    """Read the request from stdin, write the reply to stdout."""
    request = sys.stdin.buffer.read()
    header_line, _, data = request.partition(b"\n")
    header = json.loads(header_line)
    trust = TrustAnchors.from_pem(header["anchors_pem"]) if header.get("anchors_pem") else None
    sidecar = base64.b64decode(header["sidecar"]) if header.get("sidecar") else None
    credentials = read_in_process(data, header.get("mime_type"), trust, sidecar)
    reply = {
        "credentials": credentials.to_json() if credentials else None,
        "raw_store": base64.b64encode(credentials.raw_store if credentials else b"").decode(),
    }
    sys.stdout.write(json.dumps(reply))
    return 0


if __name__ == "__main__":
    sys.exit(main())
