"""Write keda-scaledobject-v1alpha1.json, the JSON Schema the KEDA overlay's ScaledObjects are
validated against (deploy/k8s/validate.py), from KEDA's CRD as cloudcoil-models-keda packages
it (pydantic models generated from KEDA's keda.sh_scaledobjects.yaml; both Apache-2.0).

Regenerate (needs the registry, not the project's environment):

    uv run --no-project --with cloudcoil-models-keda==2.16.1.0 \
        python deploy/k8s/schemas/generate_keda_schema.py

The pydantic schema is made stricter to match how the API server treats a structural CRD
schema: optional fields are not nullable, unknown fields are errors (as with
``kubectl apply --validate=strict``), titles and null defaults are dropped.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("keda-scaledobject-v1alpha1.json")


def tidy(node: Any) -> Any:
    if isinstance(node, list):
        return [tidy(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: tidy(v) for k, v in node.items() if k != "title"}
    if node.get("default", 0) is None:
        del node["default"]
    options = node.get("anyOf")
    if isinstance(options, list):
        rest = [o for o in options if o != {"type": "null"}]
        if len(rest) == 1:
            del node["anyOf"]
            node = {**rest[0], **node}
    if node.get("type") == "object" and "properties" in node:
        node.setdefault("additionalProperties", False)
    return node


def main() -> int:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject

    schema = tidy(ScaledObject.model_json_schema(by_alias=True, mode="validation"))
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "spec"})
    schema["$comment"] = (
        "KEDA ScaledObject keda.sh/v1alpha1, from cloudcoil-models-keda "
        f"{version('cloudcoil-models-keda')} (generated from KEDA's CRD; Apache-2.0). "
        "Regenerate with deploy/k8s/schemas/generate_keda_schema.py."
    )
    OUT.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
