"""schemathesis hooks for the agora node (loaded by scripts/schemathesis.sh).

The protocol routes take `application/cbor` bodies and the complaint route
an `application/vnd.agora.speed-complaint` upload; the document gives both
as `type: string, format: binary`. schemathesis has no serializer for these
media types, so it would skip those operations. They are sent as the raw
bytes it generates, as it sends `application/octet-stream`: no such bytes
are a valid signed or sealed message, so every one must be refused with a
documented 4xx problem document, never a 5xx.
"""

import schemathesis

schemathesis.serializer.alias(
    ["application/cbor", "application/vnd.agora.speed-complaint"],
    "application/octet-stream",
)
