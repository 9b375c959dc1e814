"""Fills the README's result tables from benchmarks/results/, so that no figure is typed by hand.

    .venv/bin/python scripts/readme_tables.py

Each table sits between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` in README.md
and is replaced by benchmarks/results/NAME.md, with the command from NAME.json above it (or
as it is, where NAME.md starts with its own "Reproduce:" line, as the GPU suite's summary does).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def fill(readme: str) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1)
        table = RESULTS / f"{name}.md"
        if not table.exists():
            sys.exit(f"README names results {name!r}, but {table} does not exist; "
                     "run its benchmark")
        text = table.read_text().strip()
        if text.startswith("Reproduce:"):  # a summary that names its own command
            body = text + "\n"
        else:
            meta = json.loads((RESULTS / f"{name}.json").read_text())
            body = f"Reproduce: `{meta['command']}`\n\n{text}\n"
        return f"<!-- results:{name} -->\n{body}<!-- /results:{name} -->"

    return re.sub(r"<!-- results:([\w-]+) -->.*?<!-- /results:\1 -->", replace, readme,
                  flags=re.S)


def main() -> None:
    path = ROOT / "README.md"
    path.write_text(fill(path.read_text()))


if __name__ == "__main__":
    main()
