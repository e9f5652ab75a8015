"""goldsmith keygen, sign and verify: stamping approved templates and checking stamps."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from builder.errors import GoldsmithError, InputError
from builder.formats import OutputFormat
from builder.log import log
from hardening.strictdata import escape
from validate.approvals import SignMode, list_signers
from validate.claims import VerificationError
from validate.dsse import MAX_SIGNATURES
from validate.keys import (
    PASSPHRASE_ENV,
    KeyType,
    generate_key,
    load_public_key,
    load_signing_key,
    public_key_path,
    write_key_file,
    write_keypair,
)
from validate.manifest import SSH_SIGNATURE_NAME, PrintableError, sign_artifact
from validate.policy import Pins
from validate.verify import not_trusted_dict, verify_artifact

# Plain paths: whether each is a readable regular file (or a folder) is checked
# by the code that reads it, which says so in one line (a FIFO, a device, a
# folder where a file belongs) instead of click's usage text.
_FILE = click.Path(path_type=Path)
_DIR = click.Path(path_type=Path)


def _prompt_passphrase(path: Path) -> str | None:
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value
    if not sys.stdin.isatty():
        return None
    secret: str = click.prompt(f"Passphrase for {path}", hide_input=True, err=True)
    return secret


def report_refusal(ctx: click.Context, exc: GoldsmithError, as_json: bool) -> NoReturn:
    """How verify and pull end on a refusal: NOT TRUSTED on stdout (or its
    JSON) with the error's exit code, or the escaped one-line error."""
    shown = PrintableError(exc)
    if as_json:
        click.echo(json.dumps(not_trusted_dict(exc), indent=2))
        ctx.exit(exc.exit_code)
    if isinstance(exc, VerificationError):
        click.echo(f"NOT TRUSTED: {shown.message}")
        ctx.exit(exc.exit_code)
    raise shown from exc


@click.command()
@click.option(
    "--type",
    "key_type",
    type=click.Choice([t.value for t in KeyType]),
    default=KeyType.ed25519.value,
    show_default=True,
    help="ed25519, or p256 (ECDSA) where a KMS or HSM must hold the key.",
)
@click.option(
    "--passphrase-prompt",
    is_flag=True,
    help=f"Encrypt the key with a passphrase typed twice (else ${PASSPHRASE_ENV} if set).",
)
@click.argument("out", type=_FILE)
def keygen(key_type: str, passphrase_prompt: bool, out: Path) -> None:
    """Create a signing key pair.

    The private key is written to OUT (mode 0600, refused if OUT exists), the
    public key to OUT.pub; the keyid (sha256 of the public key's SPKI DER) is
    printed.
    """
    for path in (out, public_key_path(out)):
        if os.path.lexists(path):
            raise InputError(path, None, "already exists; refusing to overwrite a key file")
    # Never a command-line argument: that would leak into shell history and `ps`.
    passphrase = os.environ.get(PASSPHRASE_ENV) or None
    if passphrase_prompt:
        passphrase = click.prompt("Passphrase", hide_input=True, confirmation_prompt=True, err=True)
    if not passphrase:
        log.warning("the private key is not encrypted: keep %s out of shared storage", out)
    key = generate_key(KeyType(key_type))
    private, public = write_keypair(key, out, passphrase=passphrase)
    click.echo(f"keyid: {key.keyid}")
    click.echo(f"private key: {private} ({key.type}{', encrypted' if passphrase else ''})")
    click.echo(f"public key: {public}")


def _key_ref(text: str) -> Path | str:
    """A pkcs11: URI stays text (a path would fold its slashes); anything else is a file."""
    return text if text.startswith("pkcs11:") else Path(text)


_PIN_ENV = click.option(
    "--pin-env",
    metavar="VAR",
    help="The environment variable holding a PKCS#11 token's PIN (default GOLDSMITH_PKCS11_PIN).",
)


@click.command()
@click.argument("artifact_dir", type=_DIR)
@click.option(
    "--key",
    "key_path",
    required=True,
    help="PEM private key, or a key in a token: 'pkcs11:token=T;object=K' (RFC 7512).",
)
@_PIN_ENV
@click.option(
    "--valid-for",
    "valid_for",
    type=click.IntRange(min=1),
    default=None,
    metavar="DAYS",
    help="Days until the manifest expires (180 for a new statement).",
)
@click.option(
    "--previous",
    type=_FILE,
    help="The manifest of the template this one replaces (its digest is recorded).",
)
@click.option(
    "--ssh-key",
    type=_FILE,
    help="Also write an OpenSSH signature (manifest.dsse.json.sig) with this key.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Sign a new statement even if the artifact is signed (its signatures are dropped).",
)
def sign(
    artifact_dir: Path,
    key_path: str,
    valid_for: int | None,
    previous: Path | None,
    ssh_key: Path | None,
    replace: bool,
    pin_env: str | None,
) -> None:
    """Sign an approved template, or add a second approver's signature.

    Writes ARTIFACT_DIR/manifest.dsse.json, only if validation.json approved the
    very image in ARTIFACT_DIR (both digests are recomputed). When the artifact
    is signed already, adds this key's signature to the exact statement the
    first approver signed, if it still describes the image and records in the
    folder; the same key twice is refused. An encrypted key's passphrase comes
    from $GOLDSMITH_KEY_PASSPHRASE or a prompt.
    """
    try:
        manifest = sign_artifact(
            artifact_dir,
            _key_ref(key_path),
            valid_for_days=valid_for,
            previous=previous,
            ssh_key=ssh_key,
            passphrase=_prompt_passphrase,
            mode=SignMode.fresh if replace else SignMode.add,
            pin_env=pin_env,
        )
    except GoldsmithError as exc:
        raise PrintableError(exc) from exc
    click.echo(manifest)
    if ssh_key is not None:
        click.echo(manifest.with_name(SSH_SIGNATURE_NAME))


@click.command()
@click.argument("artifact_dir", type=_DIR, required=False)
@click.option("--image", type=_FILE, help="The disk image (instead of ARTIFACT_DIR).")
@click.option("--manifest", type=_FILE, help="Its manifest.dsse.json (instead of ARTIFACT_DIR).")
@click.option(
    "--key",
    "keys",
    type=_FILE,
    multiple=True,
    required=True,
    help="A trusted public key (PEM); repeat for several.",
)
@click.option(
    "--threshold",
    type=click.IntRange(min=1, max=MAX_SIGNATURES),
    default=1,
    show_default=True,
    help="Distinct trusted keys that must have signed.",
)
@click.option("--policy", type=_FILE, help="Policy YAML (profile, age, controls, revocations).")
@click.option("--name", help="The template name that must be signed (no other template passes).")
@click.option(
    "--version",
    "version",
    metavar="VERSION",
    help="The exact template version that must be signed.",
)
@click.option(
    "--min-version",
    metavar="VERSION",
    help="The least template version accepted (numeric dotted, e.g. 1.2.0): no rollback.",
)
@click.option("--profile", help="The profile id validation must have used.")
@click.option(
    "--profile-digest",
    metavar="sha256:HEX",
    help="The digest of the resolved profile validation must have used.",
)
@click.option(
    "--format",
    "formats",
    type=click.Choice([str(f) for f in OutputFormat]),
    multiple=True,
    help="Check this output's file (default qcow2); repeat for several.",
)
@click.option("--all", "all_formats", is_flag=True, help="Check every output the manifest signs.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.pass_context
def verify(
    ctx: click.Context,
    artifact_dir: Path | None,
    image: Path | None,
    manifest: Path | None,
    keys: tuple[Path, ...],
    threshold: int,
    policy: Path | None,
    name: str | None,
    version: str | None,
    min_version: str | None,
    profile: str | None,
    profile_digest: str | None,
    formats: tuple[str, ...],
    all_formats: bool,
    as_json: bool,
) -> None:
    """Verify a signed template.

    Checks the signatures, the image's digests and the policy. Exit status: 0
    trusted, 1 not trusted (the reason is printed), 2 bad input. A policy file
    may set required_profile, required_profile_digest, required_name,
    required_version, min_version, required_result (approved), max_age_days,
    required_controls, revoked_keys and threshold. Pin at least --name and
    --min-version at a deploy gate: without them any template signed by a
    trusted key passes, an older one included.
    """
    by_folder = artifact_dir is not None and image is None and manifest is None
    by_files = artifact_dir is None and image is not None and manifest is not None
    if not (by_folder or by_files):
        raise click.UsageError("give ARTIFACT_DIR, or both --image and --manifest")
    pins = Pins(
        name=name,
        version=version,
        min_version=min_version,
        profile=profile,
        profile_digest=profile_digest,
    )
    try:
        verdict = verify_artifact(
            artifact_dir,
            image=image,
            manifest=manifest,
            keys=list(keys),
            threshold=threshold,
            policy=policy,
            pins=pins,
            formats=formats,
            all_formats=all_formats,
        )
    except GoldsmithError as exc:
        report_refusal(ctx, exc, as_json)
    click.echo(json.dumps(verdict.to_dict(), indent=2) if as_json else verdict.describe())


@click.command()
@click.argument("artifact_dir", type=_DIR)
@click.option(
    "--key",
    "keys",
    type=_FILE,
    multiple=True,
    help="A public key (PEM) to check the signatures with; repeat for several.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the signers as JSON.")
def signers(artifact_dir: Path, keys: tuple[Path, ...], as_json: bool) -> None:
    """List who signed ARTIFACT_DIR's manifest and attestations.

    One line per signature: the envelope, the keyid it is filed under, the key
    type (from a matching --key, else guessed from the signature) and whether
    a given key verifies it. Listing is not verifying: `goldsmith verify` is
    the deployment gate.
    """
    try:
        trusted = [load_public_key(k) for k in keys]
        rows = list_signers(artifact_dir, trusted)
    except GoldsmithError as exc:
        raise PrintableError(exc) from exc
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    for row in rows:
        verdict = {True: "verifies", False: "DOES NOT VERIFY", None: "no --key for it"}
        guessed = "" if row.type_from == "key" else "?"
        keyid = escape(row.keyid, 80) or "(no keyid)"
        click.echo(
            f"{row.envelope:22} {keyid:64}  {row.key_type}{guessed:1}  {verdict[row.verifies]}"
        )


@click.command()
@click.argument("key")
@_PIN_ENV
@click.option("--out", type=_FILE, help="Write the PEM here (refused if it exists).")
def pubkey(key: str, pin_env: str | None, out: Path | None) -> None:
    """Print the public key of KEY (a key file or a 'pkcs11:' URI) as PEM.

    For a key in a token this is how its public half reaches verifiers; the
    private key never leaves the token. The keyid goes to stderr.
    """
    try:
        signing = load_signing_key(_key_ref(key), _prompt_passphrase, pin_env=pin_env)
    except GoldsmithError as exc:
        raise PrintableError(exc) from exc
    pem = signing.public.to_pem()
    log.info("keyid %s (%s)", signing.keyid, signing.type)
    if out is None:
        click.echo(pem.decode("ascii"), nl=False)
        return
    if os.path.lexists(out):
        raise InputError(out, None, "already exists; refusing to overwrite a key file")
    write_key_file(out, pem, 0o644)
    click.echo(out)


COMMANDS: list[click.Command] = [keygen, sign, verify, signers, pubkey]
