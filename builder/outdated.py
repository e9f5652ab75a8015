"""goldsmith outdated: does a released template need rebuilding?

The answer comes from the template's manifest and the world as it is now,
without booting anything:

- the base: the spec's base identity against the base the manifest records;
- the spec and profile: their digests now against the digests recorded;
- the mirror: newer versions of the installed packages (the manifest's SBOM)
  in the suite, its -updates and its -security package indexes, compared with
  dpkg's version ordering; those from -security are named security updates;
- time: an expired approval, or a waiver in the profile that has expired since.

The manifest is decoded, not verified: this answers "should we rebuild?", which
is not a trust decision. ``goldsmith verify`` is the trust decision.

The package indexes are fetched without checking the mirror's Release
signature. At worst a hostile mirror hides an update or invents one, which
delays or forces a rebuild; the rebuild itself installs packages through apt,
which does check signatures.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import gzip
import hashlib
import io
import lzma
import time
import urllib.error
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, cast

from builder import __version__
from builder.base import bootstrap_inputs, open_url
from builder.buildkey import base_identity
from builder.errors import GoldsmithError, InputError
from builder.log import log
from builder.spec import DebootstrapBase, TemplateSpec, load_spec, suite_problem, url_problem
from hardening.errors import ProfileError
from hardening.profile import Profile, load_profile
from hardening.strictdata import DataError, escape, loads_json, read_regular
from validate.dsse import read_envelope
from validate.manifest import decode_statement
from validate.results import Package

ARCHITECTURE = "amd64"
# bookworm's main Packages index is about 45 MB uncompressed; a mirror that sends
# far more is broken or hostile, and is not decompressed further.
MAX_INDEX_BYTES = 512 * 1024 * 1024
HTTP_TIMEOUT = 60
# The longest one index (all its variants) may take, however slowly a mirror
# trickles bytes: each read also waits at most HTTP_TIMEOUT.
INDEX_DEADLINE = 600
MAX_RECORD_BYTES = 64 * 1024 * 1024
# Tried in this order; the first one the mirror has is used.
INDEX_VARIANTS = ("Packages.xz", "Packages.gz", "Packages")


class MirrorError(GoldsmithError):
    """The package mirror could not be read, so the answer is unknown (exit code 3)."""

    exit_code = 3


# -- Debian version ordering --------------------------------------------------


def _is_digit(char: str) -> bool:
    # ASCII only: str.isdigit() would also accept superscripts and other scripts' digits.
    return "0" <= char <= "9"


def _order(char: str) -> int:
    """dpkg's weight of a character in a non-digit run: ~ below everything, then
    the end of the run (0), then letters, then every other character."""
    if _is_digit(char):
        return 0
    if char.isascii() and char.isalpha():
        return ord(char)
    if char == "~":
        return -1
    return ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    """Compare two upstream versions or two revisions the way dpkg does: alternate
    runs of non-digits (character by character, by ``_order``) and runs of digits
    (as numbers), until both strings are used up."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not _is_digit(a[i])) or (j < len(b) and not _is_digit(b[j])):
            weight_a = _order(a[i]) if i < len(a) else 0
            weight_b = _order(b[j]) if j < len(b) else 0
            if weight_a != weight_b:
                return -1 if weight_a < weight_b else 1
            i, j = i + 1, j + 1
        start_a, start_b = i, j
        while i < len(a) and _is_digit(a[i]):
            i += 1
        while j < len(b) and _is_digit(b[j]):
            j += 1
        # Compared as numbers without int(): a run of thousands of digits from a
        # mirror's index must neither hit int()'s digit limit nor cost time.
        digits_a = a[start_a:i].lstrip("0")
        digits_b = b[start_b:j].lstrip("0")
        if (len(digits_a), digits_a) != (len(digits_b), digits_b):
            return -1 if (len(digits_a), digits_a) < (len(digits_b), digits_b) else 1
    return 0


def parse_version(version: str) -> tuple[int, str, str]:
    """(epoch, upstream, revision) as dpkg splits them; ValueError if malformed."""
    text = version.strip()
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"not a Debian version: {version!r}")
    epoch = 0
    if ":" in text:
        head, text = text.split(":", 1)
        if not head or not all(_is_digit(c) for c in head) or len(head) > 18:
            raise ValueError(f"epoch of {version!r} is not a number")
        epoch = int(head)
    upstream, hyphen, revision = text.rpartition("-")
    if not hyphen:
        upstream, revision = text, ""
    if not upstream:
        raise ValueError(f"{version!r} has an empty upstream version")
    return epoch, upstream, revision


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as Debian version ``a`` sorts before, equal to or after ``b``.

    Epochs first (a missing epoch is 0), then the upstream version, then the
    revision (a missing revision equals "0"). Within each part, runs of non-digits
    compare character by character with ``~`` sorting before everything, even
    the end of the string (so 1.0~rc1 < 1.0), and letters before other symbols;
    runs of digits compare as numbers (so 1.10 > 1.9 and 1.01 == 1.1).
    """
    epoch_a, upstream_a, revision_a = parse_version(a)
    epoch_b, upstream_b, revision_b = parse_version(b)
    if epoch_a != epoch_b:
        return -1 if epoch_a < epoch_b else 1
    return _compare_part(upstream_a, upstream_b) or _compare_part(revision_a, revision_b)


# -- the manifest, decoded ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BaseRef:
    name: str
    uri: str
    source: str
    sha256: str | None
    inputs: Mapping[str, Any] | None  # recipe inputs, when the manifest carries them


@dataclasses.dataclass(frozen=True)
class ManifestFacts:
    """What a manifest says about its template, read from an envelope NOT verified."""

    path: Path
    sha256: str  # of the envelope file's bytes, as a later previousManifest names it
    name: str
    version: str
    image_sha256: str | None
    bases: tuple[BaseRef, ...]
    profile_id: str | None
    profile_digest: str | None
    spec_sha256: str | None
    packages: tuple[Package, ...]
    waived: tuple[str, ...]  # control ids the manifest lists as waived
    builder_version: str | None
    build_record_sha256: str | None
    approval_time: str | None
    valid_until: str | None
    previous_manifest_sha256: str | None
    # path (relative to the spec) -> sha256 of every provisioning input, or
    # None for a manifest from before provisioning was recorded.
    provision_inputs: Mapping[str, str] | None = None


class JsonObject:
    """One JSON object of a document, with its dotted path for error messages."""

    def __init__(self, source: Path, where: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise InputError(source, where or None, "expected a JSON object")
        self.source, self.where, self.data = source, where, data

    def field(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def obj(self, key: str) -> JsonObject:
        value = self.data.get(key)
        return JsonObject(self.source, self.field(key), {} if value is None else value)

    def objs(self, key: str) -> list[JsonObject]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise InputError(self.source, self.field(key), "expected a list")
        return [JsonObject(self.source, f"{self.field(key)}[{i}]", v) for i, v in enumerate(value)]

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or (required and not value):
            raise InputError(self.source, self.field(key), "expected a string")
        return value

    def need(self, key: str) -> str:
        value = self.text(key, required=True)
        assert value is not None
        return value


def read_manifest(path: Path) -> ManifestFacts:
    """Decode a manifest envelope WITHOUT verifying it; InputError if malformed."""
    envelope, file_sha256 = read_envelope(path, expected="a manifest (DSSE envelope)")
    top = JsonObject(path, "payload", decode_statement(path, envelope))
    predicate = top.obj("predicate")
    template = predicate.obj("template")
    subjects = top.objs("subject")
    bases = []
    for item in predicate.objs("base"):
        inputs = item.data.get("inputs")
        bases.append(
            BaseRef(
                name=item.text("name") or "",
                uri=item.text("uri") or "",
                source=item.text("source") or "",
                sha256=item.obj("digest").text("sha256"),
                inputs=inputs if isinstance(inputs, dict) else None,
            )
        )
    packages = tuple(
        Package(p.need("name"), p.need("version"), p.text("architecture") or "")
        for p in predicate.obj("sbom").objs("packages")
    )
    waived = [w.need("control") for w in predicate.objs("waivers")]
    approval = predicate.obj("approval")
    provision_inputs = None
    if "provision" in predicate.data:
        provision_inputs = {
            i.need("path"): i.need("sha256")
            for step in predicate.objs("provision")
            for i in step.objs("inputs")
        }
    return ManifestFacts(
        path=path,
        sha256=file_sha256,
        name=template.need("name"),
        version=template.need("version"),
        image_sha256=subjects[0].obj("digest").text("sha256") if subjects else None,
        bases=tuple(bases),
        profile_id=predicate.obj("profile").text("id"),
        profile_digest=predicate.obj("profile").text("digest"),
        spec_sha256=predicate.obj("inputs").obj("spec").obj("digest").text("sha256"),
        packages=packages,
        waived=tuple(waived),
        builder_version=predicate.obj("builder").text("version"),
        build_record_sha256=predicate.obj("build").obj("record").obj("digest").text("sha256"),
        approval_time=approval.text("time"),
        valid_until=approval.text("validUntil"),
        previous_manifest_sha256=predicate.obj("previousManifest").obj("digest").text("sha256"),
        provision_inputs=provision_inputs,
    )


# -- package indexes ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PackageSource:
    """Where a template's packages come from: a suite on a mirror and its security mirror."""

    suite: str
    mirror: str
    security_mirror: str

    def indexes(self) -> tuple[tuple[str, str], ...]:
        """(mirror, suite) for the release, its -updates and its -security."""
        return (
            (self.mirror, self.suite),
            (self.mirror, f"{self.suite}-updates"),
            (self.security_mirror, f"{self.suite}-security"),
        )


def check_source(source: PackageSource) -> None:
    """A mirror and suite given on the command line obey the spec's rules: the
    suite becomes part of a URL path, the mirrors are fetched from."""
    problem = suite_problem(source.suite)
    if problem is not None:
        raise InputError(None, "--suite", problem)
    for option, url in (("--mirror", source.mirror), ("--security-mirror", source.security_mirror)):
        problem = url_problem(url)
        if problem is not None:
            raise InputError(None, option, problem)


def index_url(mirror: str, suite: str, variant: str) -> str:
    return f"{mirror.rstrip('/')}/dists/{suite}/main/binary-{ARCHITECTURE}/{variant}"


def parse_packages(lines: Iterable[str], names: frozenset[str] | None = None) -> Iterator[Package]:
    """Package, Version and Architecture of each stanza of a Packages index."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            if fields:
                yield from _stanza(fields, names)
            fields = {}
            continue
        if line[0] in " \t":  # a continuation line (descriptions): not a field we read
            continue
        key, sep, value = line.partition(":")
        if sep and key in ("Package", "Version", "Architecture"):
            fields[key] = value.strip()
    if fields:
        yield from _stanza(fields, names)


def _stanza(fields: Mapping[str, str], names: frozenset[str] | None) -> Iterator[Package]:
    name = fields.get("Package")
    version = fields.get("Version")
    if name and version and (names is None or name in names):
        yield Package(name, version, fields.get("Architecture", ""))


class _Limited(io.RawIOBase):
    """A stream that refuses to yield more than ``limit`` bytes or to go on
    past ``deadline`` (time.monotonic()). Wrapped around the response (a
    compressed index of endless empty gzip members yields nothing, forever)
    and around the decompressed text (a small bomb yields gigabytes)."""

    def __init__(self, stream: IO[bytes], limit: int, url: str, deadline: float) -> None:
        self.stream, self.left, self.url, self.deadline = stream, limit, url, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if time.monotonic() > self.deadline:
            raise MirrorError(f"{self.url}: index not read within {INDEX_DEADLINE}s")
        data = self.stream.read(min(len(buffer), self.left + 1))
        if len(data) > self.left:
            raise MirrorError(f"{self.url}: index larger than {MAX_INDEX_BYTES} bytes")
        self.left -= len(data)
        buffer[: len(data)] = data
        return len(data)


def _open_index(body: IO[bytes], variant: str) -> IO[bytes]:
    if variant.endswith(".xz"):
        return lzma.open(body)
    if variant.endswith(".gz"):
        return cast(IO[bytes], gzip.GzipFile(fileobj=body))
    return body


def fetch_index(
    mirror: str, suite: str, names: frozenset[str] | None = None
) -> list[Package] | None:
    """The packages of one suite's main/binary-amd64 index; None if the mirror has none.

    Bounded: at most MAX_INDEX_BYTES read and decompressed, at most
    INDEX_DEADLINE seconds for all variants, redirects to http(s) only.
    """
    deadline = time.monotonic() + INDEX_DEADLINE
    for variant in INDEX_VARIANTS:
        url = index_url(mirror, suite, variant)
        log.debug("fetching %s", url)
        timeout = max(1.0, min(HTTP_TIMEOUT, deadline - time.monotonic()))
        try:
            with open_url(url, timeout=timeout) as response:
                body = _Limited(response, MAX_INDEX_BYTES, url, deadline)
                raw = _open_index(cast(IO[bytes], io.BufferedReader(body)), variant)
                text = io.TextIOWrapper(
                    io.BufferedReader(_Limited(raw, MAX_INDEX_BYTES, url, deadline)),
                    encoding="utf-8",
                    errors="replace",
                )
                return list(parse_packages(text, names))
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404, 410):
                continue
            reason = escape(str(exc.reason), 80)
            raise MirrorError(f"{url}: HTTP {exc.code} {reason}") from exc
        except (lzma.LZMAError, gzip.BadGzipFile, zlib.error, EOFError) as exc:
            raise MirrorError(f"{url}: not a valid {variant} file ({exc})") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = escape(str(getattr(exc, "reason", exc)), 160)
            raise MirrorError(
                f"cannot read the package index {url}: {reason}",
                hint="check the mirror in the spec, or the network",
            ) from exc
    return None


# -- the check ----------------------------------------------------------------


class ReasonKind(enum.StrEnum):
    base = "base"
    spec = "spec"
    provision = "provision"
    profile = "profile"
    waiver = "waiver"
    expired = "expired"
    security = "security"
    packages = "packages"


@dataclasses.dataclass(frozen=True)
class Reason:
    kind: ReasonKind
    message: str


@dataclasses.dataclass(frozen=True)
class PackageUpdate:
    name: str
    architecture: str
    installed: str
    available: str
    suite: str  # the suite whose index has the newest version
    security: bool  # a newer version is in the -security index

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class OutdatedReport:
    spec: Path
    manifest: Path
    template: str
    version: str
    checked: str
    reasons: tuple[Reason, ...]
    updates: tuple[PackageUpdate, ...]
    notes: tuple[str, ...]

    @property
    def rebuild(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": str(self.spec),
            "manifest": str(self.manifest),
            "template": {"name": self.template, "version": self.version},
            "checked": self.checked,
            "rebuild": self.rebuild,
            "reasons": [{"kind": str(r.kind), "message": r.message} for r in self.reasons],
            "updates": [u.to_dict() for u in self.updates],
            "notes": list(self.notes),
        }

    def describe(self) -> str:
        """The report for a terminal. Names, versions and reasons carry text from
        the manifest and the mirror, so every line is escaped: no escape
        sequence or carriage return from a document reaches the terminal."""
        return "\n".join(escape(line, 2000) for line in self._lines())

    def _lines(self) -> list[str]:
        head = "REBUILD" if self.rebuild else "CURRENT"
        lines = [f"{head}: {self.template} {self.version} ({self.manifest})"]
        lines += [f"  - {r.message}" for r in self.reasons]
        for update in self.updates:
            mark = " [security]" if update.security else ""
            lines.append(
                f"    {update.name} ({update.architecture}): {update.installed} -> "
                f"{update.available} in {update.suite}{mark}"
            )
        lines += [f"  note: {n}" for n in self.notes]
        return lines


def check_outdated(
    spec_path: Path,
    manifest_path: Path,
    *,
    now: datetime.datetime | None = None,
    source: PackageSource | None = None,
) -> OutdatedReport:
    """Why (if at all) the template ``manifest_path`` describes needs rebuilding from
    ``spec_path``. ``source`` names the mirror for a file or url base, which has none."""
    moment = (now or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    if source is not None:
        check_source(source)
    spec = load_spec(spec_path)
    facts = read_manifest(manifest_path)
    if facts.name != spec.name:
        raise InputError(
            manifest_path,
            "payload.predicate.template.name",
            f"the manifest is for template '{escape(facts.name, 80)}', "
            f"but {spec_path} builds {spec.name!r}",
        )
    try:
        profile = load_profile(spec.profile)
    except ProfileError as exc:
        raise InputError(exc.path, exc.field, exc.expected) from exc
    reasons: list[Reason] = []
    notes: list[str] = []
    reasons += _base_reasons(spec, facts, notes)
    reasons += _input_reasons(spec, profile, facts)
    reasons += _time_reasons(profile, facts, moment)
    if facts.builder_version and facts.builder_version != __version__:
        notes.append(f"built by goldsmith {facts.builder_version}; this is {__version__}")
    if isinstance(spec.base, DebootstrapBase):
        source = source or PackageSource(
            spec.base.suite, spec.base.mirror, spec.base.security_mirror
        )
    updates: list[PackageUpdate] = []
    if source is None:
        notes.append(
            "package updates not checked: the base is a disk image and no mirror was given"
        )
    elif not facts.packages:
        notes.append("package updates not checked: the manifest lists no packages")
    else:
        updates = find_updates(facts.packages, source, notes)
        security = [u for u in updates if u.security]
        if security:
            reasons.append(Reason(ReasonKind.security, _count(len(security), "security update")))
        if len(updates) > len(security):
            count = len(updates) - len(security)
            reasons.append(Reason(ReasonKind.packages, _count(count, "package update")))
    return OutdatedReport(
        spec=spec.path,
        manifest=manifest_path,
        template=facts.name,
        version=facts.version,
        checked=moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        reasons=tuple(reasons),
        updates=tuple(updates),
        notes=tuple(notes),
    )


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'} available"


def _base_reasons(spec: TemplateSpec, facts: ManifestFacts, notes: list[str]) -> list[Reason]:
    identity = base_identity(spec)
    if len(facts.bases) != 1:
        return [Reason(ReasonKind.base, f"the manifest records {len(facts.bases)} bases, not 1")]
    recorded = facts.bases[0]
    if recorded.source != identity["source"]:
        return [
            Reason(
                ReasonKind.base,
                f"base changed: the spec now uses a {identity['source']} base, "
                f"the template was built from a {recorded.source} base",
            )
        ]
    if not isinstance(spec.base, DebootstrapBase):
        if recorded.sha256 != identity["sha256"]:
            return [
                Reason(
                    ReasonKind.base,
                    f"base changed: sha256 {identity['sha256'][:16]}... now, "
                    f"{(recorded.sha256 or 'none')[:16]}... when built",
                )
            ]
        return []
    want: Mapping[str, Any] = bootstrap_inputs(spec.base)
    have = recorded.inputs or _inputs_from_build_record(facts, notes)
    if have is None:
        notes.append("the base's recipe inputs are not recorded; compared suite and mirror only")
        want = {"name": f"debian-{spec.base.suite}-debootstrap", "mirror": spec.base.mirror}
        have = {"name": recorded.name, "mirror": recorded.uri}
    # "key" is the cache's digest of the other inputs, not an input itself.
    changed = sorted(k for k in {*want, *have} - {"key"} if want.get(k) != have.get(k))
    if changed:
        return [Reason(ReasonKind.base, "base changed: " + ", ".join(changed) + " differ")]
    return []


def _inputs_from_build_record(facts: ManifestFacts, notes: list[str]) -> Mapping[str, Any] | None:
    """The base inputs from the build.json beside the manifest, if it is the one signed."""
    record = facts.path.parent / "build.json"
    try:
        # A regular file of bounded size: a FIFO planted beside the manifest
        # is skipped, not waited on.
        data = read_regular(record, MAX_RECORD_BYTES)
    except (OSError, DataError):
        return None
    if hashlib.sha256(data).hexdigest() != facts.build_record_sha256:
        notes.append(f"{record} is not the build record the manifest names; not used")
        return None
    try:
        document = loads_json(data)
    except DataError as exc:
        notes.append(f"{record} cannot be read ({exc}); not used")
        return None
    base = document.get("base") if isinstance(document, dict) else None
    inputs = base.get("inputs") if isinstance(base, dict) else None
    return inputs if isinstance(inputs, dict) else None


def _input_reasons(spec: TemplateSpec, profile: Profile, facts: ManifestFacts) -> list[Reason]:
    reasons = []
    if facts.spec_sha256 != spec.sha256:
        reasons.append(
            Reason(
                ReasonKind.spec,
                f"spec changed: {spec.path} has sha256 {spec.sha256[:16]}..., "
                f"the template was built from {(facts.spec_sha256 or 'none')[:16]}...",
            )
        )
    reasons += _provision_reasons(spec, facts)
    if facts.profile_digest != profile.digest:
        reasons.append(
            Reason(
                ReasonKind.profile,
                f"profile changed: {profile.id} is {profile.digest[:23]}... now, "
                f"{(facts.profile_digest or 'none')[:23]}... when built",
            )
        )
    return reasons


def _provision_reasons(spec: TemplateSpec, facts: ManifestFacts) -> list[Reason]:
    """One reason per provisioning input that changed, appeared or went away,
    named by its path relative to the spec."""
    now = {i.path: i.sha256 for step in spec.provision for i in step.inputs}
    then = dict(facts.provision_inputs or {})
    reasons = []
    for path in sorted(now.keys() | then.keys()):
        shown = escape(path, 120)
        if path not in then:
            message = f"provisioning input added: {shown}"
        elif path not in now:
            message = f"provisioning input removed: {shown}"
        elif now[path] != then[path]:
            message = (
                f"provisioning input changed: {shown} has sha256 {now[path][:16]}..., "
                f"the template was built from {escape(then[path], 64)[:16]}..."
            )
        else:
            continue
        reasons.append(Reason(ReasonKind.provision, message))
    return reasons


def _time_reasons(
    profile: Profile, facts: ManifestFacts, moment: datetime.datetime
) -> list[Reason]:
    reasons = []
    if facts.valid_until:
        try:
            until = datetime.datetime.fromisoformat(facts.valid_until)
        except ValueError:
            until = None
        if until is not None and until.tzinfo is not None and until <= moment:
            reasons.append(
                Reason(ReasonKind.expired, f"the approval expired at {facts.valid_until}")
            )
    # A control waived when the template was built must be applied once its waiver
    # lapses; the profile's digest does not move when that happens, the date does.
    for selected in profile.controls:
        waiver = selected.waiver
        if waiver is not None and selected.id in facts.waived and not waiver.active(moment.date()):
            reasons.append(
                Reason(
                    ReasonKind.waiver,
                    f"the waiver for {selected.id} expired on {waiver.expires}; "
                    "the control now applies",
                )
            )
    return reasons


def find_updates(
    installed: Iterable[Package], source: PackageSource, notes: list[str]
) -> list[PackageUpdate]:
    """Installed packages with a newer version in the source's indexes."""
    wanted = {
        (p.name, p.architecture): p for p in installed if p.architecture in (ARCHITECTURE, "all")
    }
    names = frozenset(name for name, _ in wanted)
    available: dict[tuple[str, str], list[tuple[str, str]]] = {}  # -> [(version, suite)]
    for mirror, suite in source.indexes():
        packages = fetch_index(mirror, suite, names)
        if packages is None:
            if suite == source.suite:
                raise MirrorError(
                    f"{index_url(mirror, suite, 'Packages')}: no package index for "
                    f"{suite} (tried {', '.join(INDEX_VARIANTS)})",
                    hint="check the suite and mirror in the spec",
                )
            notes.append(f"no package index for {suite} at {mirror}")
            continue
        for package in packages:
            available.setdefault((package.name, package.architecture), []).append(
                (package.version, suite)
            )
    security_suite = f"{source.suite}-security"
    updates = []
    for key, package in sorted(wanted.items()):
        newer = [
            (version, suite)
            for version, suite in available.get(key, [])
            if _is_newer(version, package.version)
        ]
        if not newer:
            continue
        best_version, best_suite = newer[0]
        for version, suite in newer[1:]:
            order = compare_versions(version, best_version)
            if order > 0 or (order == 0 and suite == security_suite):
                best_version, best_suite = version, suite
        updates.append(
            PackageUpdate(
                name=package.name,
                architecture=package.architecture,
                installed=package.version,
                available=best_version,
                suite=best_suite,
                security=any(suite == security_suite for _, suite in newer),
            )
        )
    return updates


def _is_newer(candidate: str, installed: str) -> bool:
    try:
        return compare_versions(candidate, installed) > 0
    except ValueError:
        # One malformed version in a mirror's index says nothing about the rest.
        return False
