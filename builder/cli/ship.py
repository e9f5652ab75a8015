"""goldsmith push and pull: signed templates to and from an OCI registry."""

from __future__ import annotations

import json
from pathlib import Path

import click

from builder.cli.stamp import report_refusal
from builder.errors import GoldsmithError
from validate.manifest import PrintableError
from validate.oci import pull_template, push_template
from validate.oci_reference import parse_reference
from validate.policy import Pins
from validate.registry_auth import PASSWORD_ENV, USERNAME_ENV

_PATH = click.Path(path_type=Path)

_ca_file = click.option(
    "--ca-file",
    type=_PATH,
    help="PEM CA certificates the registry's TLS certificate must chain to (else SSL_CERT_FILE).",
)
_plain_http = click.option(
    "--plain-http",
    is_flag=True,
    help="Talk HTTP, not HTTPS (a registry on localhost in a test).",
)
_AUTH = (
    f"Credentials: ${USERNAME_ENV} and ${PASSWORD_ENV}, else the docker config file "
    "($DOCKER_CONFIG/config.json or ~/.docker/config.json)."
)


@click.command(epilog=_AUTH)
@click.argument("artifact_dir", type=_PATH)
@click.argument("ref")
@_ca_file
@_plain_http
def push(artifact_dir: Path, ref: str, ca_file: Path | None, plain_http: bool) -> None:
    """Upload a signed template to REF (host[:port]/path:tag).

    The disk images and records are layers of an OCI artifact
    (application/vnd.goldsmith.template.v1); the signed manifest is attached
    to it as a referrer. Prints REF's digest.
    """
    try:
        pushed = push_template(
            artifact_dir, parse_reference(ref), plain_http=plain_http, ca_file=ca_file
        )
    except GoldsmithError as exc:
        raise PrintableError(exc) from exc
    click.echo(pushed.describe())


@click.command(epilog=_AUTH)
@click.argument("ref")
@click.option(
    "--key",
    "keys",
    type=_PATH,
    multiple=True,
    required=True,
    help="A trusted public key (PEM); repeat for several.",
)
@click.option("--policy", type=_PATH, help="Policy YAML, as for verify.")
@click.option("--name", help="The template name that must be signed.")
@click.option("--min-version", metavar="VERSION", help="The least template version accepted.")
@click.option("--out", type=_PATH, required=True, help="Folder to create (absent or empty).")
@_ca_file
@_plain_http
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.pass_context
def pull(
    ctx: click.Context,
    ref: str,
    keys: tuple[Path, ...],
    policy: Path | None,
    name: str | None,
    min_version: str | None,
    out: Path,
    ca_file: Path | None,
    plain_http: bool,
    as_json: bool,
) -> None:
    """Fetch the template at REF into --out, verified first.

    Everything is fetched into a hidden folder beside --out; the signature,
    every output's digests and the policy are checked as `goldsmith verify
    --all` does, and only then does the folder become --out. Exit status: 0
    trusted, 1 not trusted or the registry failed (nothing is left in --out),
    2 bad input.
    """
    try:
        pulled = pull_template(
            parse_reference(ref),
            out,
            keys=list(keys),
            policy=policy,
            pins=Pins(name=name, min_version=min_version),
            plain_http=plain_http,
            ca_file=ca_file,
        )
    except GoldsmithError as exc:
        report_refusal(ctx, exc, as_json)
    if as_json:
        click.echo(json.dumps({**pulled.verdict.to_dict(), "out": str(pulled.out)}, indent=2))
    else:
        click.echo(pulled.verdict.describe())
        click.echo(f"  pulled:    {pulled.out} ({pulled.manifest_digest})")


COMMANDS: list[click.Command] = [push, pull]
