"""`agentrun keys`: the Ed25519 key that signs each run's head hash (docs/audit.md)."""

from __future__ import annotations

import click

from ..errors import UsageError
from .base import cli


@cli.command()
@click.option(
    "--create",
    is_flag=True,
    help="Make a new signing key (owner-only) where there is none yet.",
)
def keys(create: bool) -> None:
    """Print the public key that verifies run signatures (PEM) and its fingerprint.

    The key is AGENTRUN_SIGNING_KEY_FILE, else signing.key in AGENTRUN_HOME. Give the
    printed PEM to `agentrun runs verify --public-key FILE` on another machine.
    """
    from ..store import lineage

    path = lineage.signing_key_path()
    if create:
        key = lineage.create_signing_key(path)
        click.echo(f"created the signing key {path} (owner-only); runs' heads are signed from now")
    elif not path.is_file():
        raise UsageError(
            f"no signing key at {str(path)!r}: make one with `agentrun keys --create` "
            "(or point AGENTRUN_SIGNING_KEY_FILE at yours)"
        )
    else:
        key = lineage.load_signing_key(path)
    public = key.public_key()
    click.echo(f"fingerprint: {lineage.fingerprint(public)}")
    click.echo(lineage.public_pem(public), nl=False)
