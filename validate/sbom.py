"""The template's SBOM in CycloneDX 1.6 JSON, for the tools that read SBOMs.

Made from validation's list of installed packages (dpkg in the validated
guest), with a package URL per package, its Debian source package (as a
pedigree ancestor with ``arch=source``, and a property), and the image as the
described component (``metadata.component``, with its SHA-256 and SHA-512).
The document is checked against the CycloneDX 1.6 JSON schema by
``cyclonedx-python-lib`` (maintained by the OWASP CycloneDX project) before
anything is signed; it is carried as its own in-toto attestation
(``sbom.dsse.json``, predicate type ``https://cyclonedx.org/bom``) whose
payload digest the template statement records.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import uuid
from collections.abc import Sequence
from typing import Any

from builder.errors import GoldsmithError
from hardening.strictdata import DataError, loads_json
from validate.results import Package

PREDICATE_TYPE = "https://cyclonedx.org/bom"
MEDIA_TYPE = "application/vnd.cyclonedx+json"
SPEC_VERSION = "1.6"
SOURCE_PROPERTY = "goldsmith:deb:source"
SOURCE_VERSION_PROPERTY = "goldsmith:deb:sourceVersion"
# A BOM's serial number names one BOM; the same image and packages give the same
# one (uuid5 under this namespace), so signing again does not make a "new" BOM.
_SERIAL_NAMESPACE = uuid.UUID("6f0d7a4e-3a51-5c1b-9a43-6b0c6a1e9d11")
# base-files carries the Debian release as its version's first number (12.4+deb12u5).
_RELEASE = re.compile(r"([0-9]+)(?:\.|$)")


class SbomError(GoldsmithError):
    """The SBOM could not be made or is not valid CycloneDX (exit code 1)."""


@dataclasses.dataclass(frozen=True)
class Image:
    name: str  # the template's name
    version: str
    sha256: str
    sha512: str


def debian_release(packages: Sequence[Package]) -> str | None:
    """ "debian-12" from base-files' version, the release's own marker; None without it."""
    for package in packages:
        if package.name == "base-files" and (match := _RELEASE.match(package.version)):
            return f"debian-{match.group(1)}"
    return None


def make_bom(image: Image, packages: Sequence[Package], *, timestamp: str) -> bytes:
    """The CycloneDX 1.6 JSON document, checked against the schema."""
    # Imported here: only signing needs the CycloneDX library.
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType, Pedigree
    from cyclonedx.model.tool import ToolRepository
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    distro = debian_release(packages)
    qualifiers = {"distro": distro} if distro else {}
    described = Component(
        name=image.name,
        version=image.version,
        type=ComponentType.OPERATING_SYSTEM,
        bom_ref=f"image:{image.name}@{image.version}",
        description="a goldsmith VM template (qcow2 disk image)",
        hashes=[
            HashType(alg=HashAlgorithm.SHA_256, content=image.sha256),
            HashType(alg=HashAlgorithm.SHA_512, content=image.sha512),
        ],
    )
    components = []
    seen: set[str] = set()
    for package in packages:
        purl = PackageURL(
            type="deb",
            namespace="debian",
            name=package.name,
            version=package.version,
            qualifiers={"arch": package.architecture, **qualifiers},
        )
        ref = str(purl)
        if ref in seen:  # multi-arch: one entry per name and architecture
            continue
        seen.add(ref)
        properties = []
        pedigree = None
        if package.source:
            source_version = package.source_version or package.version
            properties = [
                Property(name=SOURCE_PROPERTY, value=package.source),
                Property(name=SOURCE_VERSION_PROPERTY, value=source_version),
            ]
            source_purl = PackageURL(
                type="deb",
                namespace="debian",
                name=package.source,
                version=source_version,
                qualifiers={"arch": "source", **qualifiers},
            )
            pedigree = Pedigree(
                ancestors=[
                    Component(
                        name=package.source,
                        version=source_version,
                        type=ComponentType.LIBRARY,
                        purl=source_purl,
                    )
                ]
            )
        components.append(
            Component(
                name=package.name,
                version=package.version,
                type=ComponentType.LIBRARY,
                purl=purl,
                bom_ref=ref,
                properties=properties,
                pedigree=pedigree,
            )
        )
    when = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    tools = ToolRepository(components=[Component(name="goldsmith", type=ComponentType.APPLICATION)])
    bom = Bom(
        serial_number=uuid.uuid5(_SERIAL_NAMESPACE, f"{image.sha256}:{len(components)}"),
        metadata=BomMetaData(component=described, timestamp=when, tools=tools),
        components=components,
    )
    bom.register_dependency(described, components)
    text = JsonV1Dot6(bom).output_as_string(indent=2)
    check_bom(text)
    return (text + "\n").encode("utf-8")


def check_bom(text: str) -> None:
    """Refuse a document the CycloneDX 1.6 JSON schema does not accept."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise SbomError(f"the CycloneDX SBOM does not match the 1.6 schema: {error}")


@dataclasses.dataclass(frozen=True)
class SbomSummary:
    spec_version: str
    components: int
    with_source: int  # components whose source package is recorded
    distro: str | None


def _items(value: Any) -> list[Any]:
    # Decoded, not verified (report): a list only where there is one.
    return value if isinstance(value, list) else []


def summarize(bom: Any) -> SbomSummary | None:
    """The few facts a report shows of a decoded BOM; None when it is not one."""
    if not isinstance(bom, dict) or bom.get("bomFormat") != "CycloneDX":
        return None
    components = [c for c in _items(bom.get("components")) if isinstance(c, dict)]
    distro = None
    for component in components:
        purl = component.get("purl")
        if isinstance(purl, str) and (match := re.search(r"[?&]distro=([^&]+)", purl)):
            distro = match.group(1)
            break
    return SbomSummary(
        spec_version=str(bom.get("specVersion")),
        components=len(components),
        with_source=sum(
            1
            for c in components
            if any(
                isinstance(p, dict) and p.get("name") == SOURCE_PROPERTY
                for p in _items(c.get("properties"))
            )
        ),
        distro=distro,
    )


def read_bom(data: bytes) -> Any:
    """The BOM's JSON under the strict rules; SbomError otherwise."""
    try:
        return loads_json(data)
    except DataError as exc:
        raise SbomError(f"the SBOM is not JSON ({exc})") from None
