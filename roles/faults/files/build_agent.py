"""Build the fault agent's zipapp on the controller, the same bytes for the same sources.

usage: build_agent.py SOURCE_PACKAGE_DIR OUTPUT.pyz

Like `python -m zipapp -p /usr/bin/python3 -m chaosfault.cli:entry`, but with the entries
sorted and a fixed timestamp, so an unchanged source gives an identical archive and the copy
to each host changes nothing. Only .py files are taken (no bytecode caches). The output is
replaced in one rename (safe when several builds run at once), and only when its bytes
differ; prints {"changed": true|false}.
"""

from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from pathlib import Path

SHEBANG = b"#!/usr/bin/python3\n"
MAIN = "# -*- coding: utf-8 -*-\nimport chaosfault.cli\nchaosfault.cli.entry()\n"
STAMP = (1980, 1, 1, 0, 0, 0)


def archive(package: Path) -> bytes:
    buffer = io.BytesIO()
    buffer.write(SHEBANG)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        entries = {"__main__.py": MAIN.encode()}
        for path in sorted(package.rglob("*.py")):
            if "__pycache__" not in path.parts:
                name = f"{package.name}/{path.relative_to(package).as_posix()}"
                entries[name] = path.read_bytes()
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zipped.writestr(info, entries[name])
    return buffer.getvalue()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    package, output = Path(argv[0]), Path(argv[1])
    if not (package / "__init__.py").is_file():
        print(f"build_agent: {package} is not a Python package (no __init__.py)", file=sys.stderr)
        return 2
    data = archive(package)
    if output.is_file() and output.read_bytes() == data:
        print(json.dumps({"changed": False}))
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    # Several hosts may ask for the build at once: each writes its own partial file.
    partial = output.with_name(f"{output.name}.{os.getpid()}.new")
    partial.write_bytes(data)
    partial.chmod(0o755)
    os.replace(partial, output)
    print(json.dumps({"changed": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
