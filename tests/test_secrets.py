"""No secret in the step directories readers copy (the machine-side checks run at the end of each stage)."""

from __future__ import annotations

import secrets

from tests.harness.secrets_audit import secrets_in_tree
from tests.harness.stages import STEPS


def test_no_file_under_steps_holds_a_secret():
    """No private key, hash, token, literal secret setting or secret file (cookie_secret, acme.json, ...)."""
    found = secrets_in_tree(STEPS)
    assert not found, "secrets under steps/ (readers copy these directories; secrets are made on the machine):\n" + (
        "\n".join(found)
    )


def test_the_secret_finder_finds_each_kind(tmp_path):
    """The check above is not vacuous: each kind of secret it looks for, planted in a copy, is found."""
    root = tmp_path / "steps"
    stage = root / "99-planted"
    stage.mkdir(parents=True)
    (stage / "jupyterhub_config.py").write_text(
        f'c.JupyterHub.cookie_secret = "{secrets.token_hex(32)}"\n'
        f'c.GenericOAuthenticator.client_secret = "{secrets.token_urlsafe(24)}"\n'
        'c.GenericOAuthenticator.client_secret = os.environ["OIDC_CLIENT_SECRET"]\n'
    )
    (stage / "env").write_text(f"GITHUB_CLIENT_SECRET={secrets.token_hex(20)}\n")
    (stage / "traefik.toml").write_text('users = ["api:$2b$12$' + "a" * 53 + '"]\n')
    (stage / "notes.md").write_text("-----BEGIN EC PRIVATE KEY-----\n")
    (stage / "acme.json").write_text("{}\n")
    found = secrets_in_tree(root)
    assert found == [
        "steps/99-planted/acme.json: a secret file by its name",
        "steps/99-planted/env:1: a secret in a setting",
        "steps/99-planted/jupyterhub_config.py:1: a secret in a setting",
        "steps/99-planted/jupyterhub_config.py:1: a 256-bit hex key",
        "steps/99-planted/jupyterhub_config.py:2: a secret in a setting",
        "steps/99-planted/notes.md:1: a private key",
        "steps/99-planted/traefik.toml:1: a bcrypt hash",
    ], found
