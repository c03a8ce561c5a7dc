"""Which fields of a child Tailor owns, read from its server-side-apply managedFields."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tailor_operator import naming


def _entry(child: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Tailor's apply entry in managedFields for the object itself (not a subresource)."""
    for entry in child["metadata"].get("managedFields") or ():
        if (
            entry.get("manager") == naming.FIELD_MANAGER
            and entry.get("operation") == "Apply"
            and not entry.get("subresource")
        ):
            return entry  # type: ignore[no-any-return]
    return None


def owns_replicas(child: Mapping[str, Any]) -> bool:
    entry = _entry(child) or {}
    return "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})


def change_marker(child: Mapping[str, Any]) -> str:
    """What changes when someone else changes what Tailor owns, and when Tailor's apply puts
    it back. When another writer changes the value of a field Tailor applied, the API server
    takes the field out of Tailor's set; when Tailor's apply changes a value (a revert), the
    entry's time moves (an apply that changes nothing leaves it). So the marker is the set
    and the time. Not the generation: that also moves when the HPA scales a Deployment or
    someone runs ``kubectl rollout restart``, and neither touches a field Tailor owns."""
    entry = _entry(child)
    if entry is None:
        return "none"
    encoded = json.dumps(entry.get("fieldsV1") or {}, sort_keys=True, separators=(",", ":"))
    digest = hashlib.blake2b(encoded.encode(), digest_size=8).hexdigest()
    return f"{digest}@{entry.get('time')}"
