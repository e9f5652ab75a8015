"""What the deployer demands of a template: the pins and the policy file.

``Pins`` (``--name``, ``--version``, ``--min-version``, ``--profile``,
``--profile-digest``, or the same keys in the policy) stop an older or another
template, validly signed, from passing in the expected place (rollback).
``Policy`` is the YAML file ``verify --policy`` reads; ``Policy.checks`` turns
both into the one AllOf of validate/trust_checks.py that verify runs.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from builder.errors import InputError
from hardening.errors import suggest
from hardening.strictdata import DataError, escape, loads_yaml, read_regular
from validate.dsse import MAX_SIGNATURES
from validate.manifest import MAX_VALID_FOR_DAYS
from validate.statement import FIRMWARES, PROFILE_DIGEST, SHA256_HEX
from validate.trust_checks import (
    AllOf,
    Check,
    MaxAge,
    MinVersion,
    RequiredClaim,
    RequiredControls,
    RequiredFirmware,
    RequiredProfileDigest,
    SignedByThreshold,
    image_digests_match,
    image_self_contained,
    not_expired,
    numeric_version,
    required_tpm,
    results_approved,
)

# A policy is a few lines; a larger file is not one.
MAX_POLICY_BYTES = 1 << 20
_KEYID = re.compile(r"[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True)
class Pins:
    """What the deployer expects this very template to be. Without pins, any
    template signed by a trusted key passes: an older one put in the expected
    place (a rollback) included."""

    name: str | None = None
    version: str | None = None
    min_version: str | None = None
    profile: str | None = None
    profile_digest: str | None = None
    flags: bool = True  # from the command line (messages name the flag) or the policy

    def origin(self, flag: str, key: str) -> str:
        return flag if self.flags else f"the policy ({key})"

    def validate(self, path: Path | None = None) -> Pins:
        """These pins, with the digest normalised; InputError naming the bad one."""

        def where(flag: str, key: str) -> tuple[Path | None, str]:
            return (None, flag) if self.flags else (path, key)

        for value, flag, key in (
            (self.name, "--name", "required_name"),
            (self.version, "--version", "required_version"),
            (self.profile, "--profile", "required_profile"),
        ):
            if value is not None and (not value or len(value) > 256):
                raise InputError(*where(flag, key), "expected a non-empty string")
        if self.min_version is not None and numeric_version(self.min_version) is None:
            raise InputError(
                *where("--min-version", "min_version"),
                "expected a numeric dotted version such as 1.2.0",
            )
        digest = self.profile_digest
        if digest is not None:
            digest = digest.lower()
            if SHA256_HEX.fullmatch(digest):
                digest = "sha256:" + digest
            if not PROFILE_DIGEST.fullmatch(digest):
                raise InputError(
                    *where("--profile-digest", "required_profile_digest"),
                    "expected sha256:<64 hex digits>, the profile digest validation recorded",
                )
        return dataclasses.replace(self, profile_digest=digest)

    def checks(self) -> list[Check]:
        checks: list[Check] = []
        if self.name is not None:
            checks.append(
                RequiredClaim("template_name", self.name, self.origin("--name", "required_name"))
            )
        if self.version is not None:
            checks.append(
                RequiredClaim(
                    "template_version",
                    self.version,
                    self.origin("--version", "required_version"),
                )
            )
        if self.min_version is not None:
            checks.append(MinVersion(self.min_version, self.origin("--min-version", "min_version")))
        if self.profile is not None:
            checks.append(
                RequiredClaim(
                    "profile_id", self.profile, self.origin("--profile", "required_profile")
                )
            )
        if self.profile_digest is not None:
            checks.append(
                RequiredProfileDigest(
                    self.profile_digest,
                    self.origin("--profile-digest", "required_profile_digest"),
                )
            )
        return checks


@dataclasses.dataclass(frozen=True)
class Policy:
    required_profile: str | None = None
    required_result: str = "approved"
    max_age_days: float | None = None
    required_controls: tuple[str, ...] = ()
    revoked_keys: frozenset[str] = frozenset()
    threshold: int = 1
    required_name: str | None = None
    required_version: str | None = None
    min_version: str | None = None
    required_profile_digest: str | None = None
    require_firmware: str | None = None  # bios | uefi | uefi-secureboot
    require_tpm: bool = False

    @classmethod
    def load(cls, path: Path) -> Policy:
        """The policy file, read under the strict rules: a duplicated key
        (``revoked_keys: [K]`` then ``revoked_keys: []``) is refused, never merged."""
        try:
            data = loads_yaml(read_regular(path, MAX_POLICY_BYTES))
        except FileNotFoundError:
            raise InputError(path, None, "policy file not found") from None
        except OSError as exc:
            raise InputError(path, None, f"policy file cannot be read ({exc.strerror})") from None
        except DataError as exc:
            if path.is_dir():
                raise InputError(path, None, "is a directory") from None
            raise InputError(path, _field_of_inf(path), f"expected YAML ({exc})") from None
        return cls.from_dict(data if data is not None else {}, path)

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> Policy:
        if not isinstance(data, dict):
            raise InputError(path, None, "expected a mapping of policy settings")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                hint = suggest(str(key), known) or f"; known keys: {known}"
                raise InputError(path, escape(str(key)), f"unknown policy key{hint}")
        values: dict[str, Any] = {}
        for key in ("required_profile", "required_name", "required_version", "min_version"):
            if (value := data.get(key)) is not None:
                if not isinstance(value, str) or not value:
                    raise InputError(path, key, "expected a non-empty string (quote versions)")
                values[key] = value
        if (digest := data.get("required_profile_digest")) is not None:
            if not isinstance(digest, str):
                raise InputError(path, "required_profile_digest", "expected sha256:<hex>")
            values["required_profile_digest"] = digest
        if (firmware := data.get("require_firmware")) is not None:
            if firmware not in FIRMWARES:
                raise InputError(path, "require_firmware", "expected " + ", ".join(FIRMWARES))
            values["require_firmware"] = firmware
        if (tpm := data.get("require_tpm")) is not None:
            if not isinstance(tpm, bool):
                raise InputError(path, "require_tpm", "expected true or false")
            values["require_tpm"] = tpm
        if data.get("required_result", "approved") != "approved":
            raise InputError(path, "required_result", "expected 'approved' (the only result)")
        if (age := data.get("max_age_days")) is not None:
            # .inf, .nan and 1.0e12 would pass a "positive number" test and then
            # overflow (or disable the check); a manifest lives at most MAX_VALID_FOR_DAYS.
            if (
                isinstance(age, bool)
                or not isinstance(age, int | float)
                or not math.isfinite(age)
                or not 0 < age <= MAX_VALID_FOR_DAYS
            ):
                raise InputError(
                    path,
                    "max_age_days",
                    f"expected a number of days above 0 and at most {MAX_VALID_FOR_DAYS}",
                )
            values["max_age_days"] = float(age)
        controls = data.get("required_controls") or []
        if not isinstance(controls, list) or not all(isinstance(c, str) and c for c in controls):
            raise InputError(path, "required_controls", "expected a list of control ids")
        values["required_controls"] = tuple(controls)
        revoked = data.get("revoked_keys") or []
        if not isinstance(revoked, list) or not all(
            isinstance(k, str) and _KEYID.fullmatch(k.lower()) for k in revoked
        ):
            raise InputError(
                path, "revoked_keys", "expected a list of keyids (64 hex digits, sha256 of SPKI)"
            )
        values["revoked_keys"] = frozenset(k.lower() for k in revoked)
        if (threshold := data.get("threshold")) is not None:
            if (
                isinstance(threshold, bool)
                or not isinstance(threshold, int)
                or not 1 <= threshold <= MAX_SIGNATURES
            ):
                raise InputError(
                    path, "threshold", f"expected an integer from 1 to {MAX_SIGNATURES}"
                )
            values["threshold"] = threshold
        policy = cls(**values)
        policy.pins().validate(path)
        return policy

    def pins(self) -> Pins:
        return Pins(
            name=self.required_name,
            version=self.required_version,
            min_version=self.min_version,
            profile=self.required_profile,
            profile_digest=self.required_profile_digest,
            flags=False,
        )

    def checks(
        self, threshold: int, pins: Pins | None = None, image_checks: Sequence[Check] = ()
    ) -> AllOf:
        """Every check this policy (and the command line's pins) demand; the
        threshold is the stricter of the two, and every pin from either holds."""
        checks: list[Check] = [
            SignedByThreshold(max(threshold, self.threshold), self.revoked_keys),
            not_expired,  # validUntil is enforced whatever the policy says
            results_approved,  # so is the approval: sign refuses anything else
        ]
        checks += self.pins().validate().checks()
        if pins is not None:
            checks += pins.validate().checks()
        if self.max_age_days is not None:
            checks.append(MaxAge(self.max_age_days))
        if self.required_controls:
            checks.append(RequiredControls(self.required_controls))
        if self.require_firmware is not None:
            checks.append(RequiredFirmware(self.require_firmware))
        if self.require_tpm:
            checks.append(required_tpm)
        checks += image_checks or [image_self_contained, image_digests_match]
        return AllOf(tuple(checks))


_INF_OR_NAN = re.compile(r"([A-Za-z_]+)\s*:\s*[-+]?\.(?:inf|Inf|INF|nan|NaN|NAN)\s*(?:#.*)?")


def _field_of_inf(path: Path) -> str | None:
    """The policy key set to .inf or .nan, if that is what was refused: the
    strict reader refuses them before any key is known."""
    try:
        text = read_regular(path, MAX_POLICY_BYTES).decode("utf-8")
    except (OSError, DataError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        if match := _INF_OR_NAN.fullmatch(line.strip()):
            return match.group(1)
    return None
