"""goldsmith lint: everything a build would decide, without booting anything.

What Packer users know as `packer validate`: the spec and its profile are read
as a build reads them, every provisioning input is hashed, host secrets are
looked up (by name; their values are never shown), the apply script and the
validation's evidence script are rendered, and the build key is computed.
Exit 0 when every spec would build, 2 at the first bad input.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import click

from builder.cli.build import AS_JSON, SPECS


def lint_spec(path: Path) -> dict[str, Any]:
    """What a build of ``path`` would do, as data; InputError on bad input."""
    from builder.build import plan_build
    from builder.formats import ALL_FORMATS, OutputFormat
    from builder.provision import AnsibleStep, host_secrets
    from builder.provisioner import ansible_playbook
    from builder.proxy import read_proxy
    from builder.spec import DebootstrapBase, FileBase, load_spec
    from hardening.check import probes_for
    from hardening.facts import render_gather_script

    spec = load_spec(path)
    profile, script, key = plan_build(spec)
    secrets = sorted(host_secrets(spec.provision, spec.path))
    if spec.apt_proxy is not None:
        read_proxy(spec.apt_proxy, spec.path)  # set, and a proxy URL; never shown
        secrets.append(spec.apt_proxy.env_from_host)
    for step in spec.provision:
        if isinstance(step, AnsibleStep):
            ansible_playbook(spec.path, step)  # refuses when the extra is missing
    gather, _ = render_gather_script(probes_for(profile.controls))
    if isinstance(spec.base, DebootstrapBase):
        base = f"debootstrap {spec.base.suite} from {spec.base.mirror}"
    elif isinstance(spec.base, FileBase):
        base = f"file {spec.base.path.name}"
    else:
        base = f"url {spec.base.url}"
    stages = ["base", "boot"] + (["apt proxy"] if spec.apt_proxy else []) + ["cloud-init"]
    stages += ["upgrade"] if spec.upgrade else []
    stages += ["packages"] if spec.packages else []
    stages += [f"provision[{s.index}] {s.kind} ({s.name})" for s in spec.provision]
    stages += ["harden", "seal", "shutdown", "compact", "scrub", "digest"]
    # The conversions, in the order build.py's make_outputs runs them.
    stages += [
        f"convert-{fmt}"
        for fmt in ALL_FORMATS
        if fmt in spec.outputs and fmt is not OutputFormat.qcow2
    ]
    waived = sum(1 for c in profile.controls if c.waiver is not None)
    return {
        "spec": str(path),
        "template": {"name": spec.name, "version": spec.version},
        "base": base,
        "profile": {
            "id": profile.id,
            "version": profile.version,
            "digest": profile.digest,
            "controls": len(profile.controls),
            "waived": waived,
        },
        "provision": [step.record() for step in spec.provision],
        "host_secrets": secrets,  # names only
        "apply_script": {
            "lines": script.count("\n"),
            "sha256": hashlib.sha256(script.encode()).hexdigest(),
        },
        "check_script": {
            "lines": gather.count("\n"),
            "sha256": hashlib.sha256(gather.encode()).hexdigest(),
        },
        "stages": stages,
        "build_key": key,
        "artifact": f"{spec.name}-{spec.version}",
    }


def describe(result: dict[str, Any]) -> str:
    profile = result["profile"]
    secrets = result["host_secrets"]
    named = f"; host secrets by name: {', '.join(secrets)}" if secrets else ""
    lines = [
        f"{result['spec']}: ok",
        f"  template:  {result['template']['name']} {result['template']['version']}",
        f"  base:      {result['base']}",
        f"  profile:   {profile['id']} {profile['version']} ({profile['controls']} controls, "
        f"{profile['waived']} waived) {profile['digest']}",
        f"  provision: {len(result['provision'])} step(s){named}",
        f"  apply:     {result['apply_script']['lines']} lines, sha256 "
        f"{result['apply_script']['sha256'][:16]}...",
        f"  check:     {result['check_script']['lines']} lines, sha256 "
        f"{result['check_script']['sha256'][:16]}...",
        f"  would run: {' -> '.join(result['stages'])}",
        f"  build key: {result['build_key']}",
    ]
    return "\n".join(lines)


@click.command()
@SPECS
@AS_JSON
def lint(specs: tuple[Path, ...], as_json: bool) -> None:
    """Check SPECS as a build would, and show what it would do; boots nothing."""
    results = [lint_spec(path) for path in specs]
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        click.echo("\n".join(describe(r) for r in results))


COMMANDS: list[click.Command] = [lint]
