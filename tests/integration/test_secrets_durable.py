"""The secrets the shop makes in its data dir at first start are on the disk before they are used
(issue 11, point 3): checked against what was really synced, kept by the power-cut shim
(tests/synced_only.c). A file created and written but never synced can come back empty after a power
cut, and an empty token secret would sign every token with nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.synced_only import restartable, shim_env

SCRIPT = """
import json, os, sys
from pathlib import Path
from shop.infra.auth import load_or_create_secret
from shop.infra.signing import load_or_create_key_pair

d = Path(sys.argv[1])
secret = load_or_create_secret(d / "token.secret")
private, public = load_or_create_key_pair(d)
print(json.dumps({"token.secret": secret, "sandbox_private.pem": private.decode(),
                  "sandbox_public.pem": public.decode()}))
sys.stdout.flush()
os._exit(0)  # the cut, right after they were made (and could have been used)
"""


def test_secrets_made_at_first_start_survive_a_power_cut(synced_only: Path, tmp_path: Path) -> None:
    watched, shadow = tmp_path / "data", tmp_path / "shadow"
    watched.mkdir()
    shadow.mkdir()
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(watched)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **shim_env(synced_only, watched, shadow)})
    assert run.returncode == 0, run.stderr
    made = json.loads(run.stdout)
    survived = restartable(shadow)
    assert {name: (survived / name).read_text().strip() for name in made} == {
        name: value.strip() for name, value in made.items()}
    assert sorted(p.name for p in survived.iterdir()) == sorted(made)  # no temporary file left as a name
