"""Lab signing keys on the controller, through the same code as the lab_pki module
(library/lab_pki.py): one implementation of key files (0600) and JWK conversion."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from chaos_runner.ansible import REPO_ROOT
from chaos_runner.errors import ConfigError

_spec = importlib.util.spec_from_file_location("lab_pki", REPO_ROOT / "library" / "lab_pki.py")
if _spec is None or _spec.loader is None:  # pragma: no cover - the file is part of the repo
    raise ConfigError("cannot load library/lab_pki.py")
_lab_pki = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_lab_pki)


def load_or_create_signing_key(pki_dir: Path, kid: str) -> Any:
    if not kid or "/" in kid or kid.startswith("."):
        raise ConfigError(f"signing key id {kid!r} is not a plain name")
    (pki_dir / "jwt").mkdir(mode=0o700, parents=True, exist_ok=True)
    created: list[str] = []
    return _lab_pki._load_or_create_key(str(pki_dir / "jwt" / f"{kid}.key"), 2048, created)


def jwk_for(kid: str, key: Any) -> dict[str, str]:
    jwk: dict[str, str] = _lab_pki._jwk(kid, key)
    return jwk
