"""``generated/manifest.json`` (kind BuildManifest): what a build was made from and of.

Written last by every build (:func:`vilms.compiler.write.with_manifest`); read by `vilms diff`
(to summarise it) and by the stale-output check (to say when generated/ was built by another
ViLMS version).
"""

from __future__ import annotations

from collections.abc import Mapping

from vilms.compiler.record import record

from .contract import Contract


@record
class BuildInput:
    """The input a build was made from."""

    file: str  # the input's file name, e.g. vilms.yaml
    sha256: str  # of its bytes


@record
class BuildManifest:
    """What a build was made from and of."""

    generator: str  # always "vilms"
    vilms_version: str  # the ViLMS that wrote generated/
    input: BuildInput
    files: Mapping[str, str]  # every other file of generated/ → its sha256


BUILD_MANIFEST = Contract(
    kind="BuildManifest",
    root=BuildManifest,
    schema_file="build-manifest.schema.json",
    format="json",
    remedy="run `vilms build`",
)
