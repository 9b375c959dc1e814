"""Fills the result tables of README.md and the docs/ pages from benchmarks/results/, so that
no figure is typed by hand.

    .venv/bin/python scripts/readme_tables.py

Each table sits between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` in a page
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
            shown = ", then ".join(f"`{c}`" for c in commands_of(meta))
            body = f"Reproduce: {shown}\n\n{text}\n"
        return f"<!-- results:{name} -->\n{body}<!-- /results:{name} -->"

    return re.sub(r"<!-- results:([\w-]+) -->.*?<!-- /results:\1 -->", replace, readme,
                  flags=re.S)


def commands_of(meta: dict) -> list[str]:
    """The commands that made a results file: its "command", or its "commands" in order (a
    benchmark that reran some rows and kept the others)."""
    return meta.get("commands") or ([meta["command"]] if meta.get("command") else [])


def commands_table() -> str:
    """Every result file that names its command, and that command, as a markdown table."""
    rows = ["| result | command |", "|---|---|"]
    for path in sorted(RESULTS.rglob("*.json")):
        try:
            command = "; ".join(commands_of(json.loads(path.read_text())))
        except (ValueError, AttributeError):
            continue
        if command:
            rel = path.relative_to(ROOT).as_posix()
            cell = command.replace("|", "\\|")  # a shell pipe would end the table cell
            rows.append(f"| `{rel}` | `{cell}` |")
    return "\n".join(rows)


def fill_commands(page: str) -> str:
    return re.sub(r"<!-- commands -->.*?<!-- /commands -->",
                  lambda _: f"<!-- commands -->\n{commands_table()}\n<!-- /commands -->",
                  page, flags=re.S)


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def main() -> None:
    for path in PAGES:
        text = path.read_text()
        filled = fill_commands(fill(text))
        if filled != text:
            path.write_text(filled)


if __name__ == "__main__":
    main()
