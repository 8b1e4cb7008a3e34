#!/usr/bin/env python
"""Re-vendor the Kubernetes JSON schemas tests/test_deploy.py validates against.

They come out of a PyPI wheel (no other network access is needed)::

    .venv/bin/python tests/schemas/update.py            # the pinned versions below
    .venv/bin/python tests/schemas/update.py --k8s-version 1.33.0

* ``kubernetes/v<K8S>-local-strict/``: the strict schemas (no unknown fields)
  of kubernetes-validate for the kinds deploy/k8s/ uses, and
  ``_definitions.json`` pruned to the definitions those kinds reach (the full
  file is ~1 MB and covers every API group).

See README.md beside this file for provenance and licences.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

KUBERNETES_VALIDATE_VERSION = "1.37.0"
K8S_VERSION = "1.32.0"
#: Schema file stems (kind-group-version) of every kind under deploy/k8s/.
K8S_KINDS = (
    "namespace-v1",
    "persistentvolumeclaim-v1",
    "deployment-apps-v1",
    "service-v1",
    "horizontalpodautoscaler-autoscaling-v2",
    "job-batch-v1",
)
#: How the kind files ($ref into _definitions.json) and the definitions (local $ref) refer to one.
DEFINITION_REF_PREFIXES = ("/api/_definitions.json#/$defs/", "#/$defs/")


def _wheel(name: str, version: str, into: Path) -> zipfile.ZipFile:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--only-binary", ":all:", "-d", str(into), f"{name}=={version}"], check=True)
    (path,) = into.glob(f"{name.replace('-', '_')}-{version}-*.whl")
    return zipfile.ZipFile(path)


def _refs(node, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        for prefix in DEFINITION_REF_PREFIXES:
            if isinstance(ref, str) and ref.startswith(prefix):
                found.add(ref[len(prefix):])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def vendor_kubernetes(tmp: Path, k8s_version: str) -> None:
    wheel = _wheel("kubernetes-validate", KUBERNETES_VALIDATE_VERSION, tmp)
    folder = f"v{k8s_version}-local-strict"
    base = f"kubernetes_validate/kubernetes-json-schema/{folder}/"
    out = HERE / "kubernetes" / folder
    shutil.rmtree(HERE / "kubernetes", ignore_errors=True)
    out.mkdir(parents=True)
    definitions = json.loads(wheel.read(base + "_definitions.json"))
    wanted: set[str] = set()
    for stem in K8S_KINDS:
        data = wheel.read(f"{base}{stem}.json")
        (out / f"{stem}.json").write_bytes(data)
        _refs(json.loads(data), wanted)
    done: set[str] = set()
    while wanted - done:
        name = sorted(wanted - done)[0]
        done.add(name)
        _refs(definitions["$defs"][name], wanted)
    definitions["$defs"] = {name: definitions["$defs"][name] for name in sorted(done)}
    (out / "_definitions.json").write_text(json.dumps(definitions, indent=1, sort_keys=True) + "\n")
    print(f"{folder}: {len(K8S_KINDS)} kinds, {len(done)} definitions "
          f"from kubernetes-validate {KUBERNETES_VALIDATE_VERSION}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k8s-version", default=K8S_VERSION, help="Kubernetes schema version (x.y.0)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        vendor_kubernetes(Path(tmp), args.k8s_version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
