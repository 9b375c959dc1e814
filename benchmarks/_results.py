"""The one way benchmarks write their results: ``NAME.json`` (the report, with the command that
made it) and ``NAME.md`` (its table), both atomically, into benchmarks/results/ or where
``--out`` says. Imported by the scripts as ``from _results import write_results`` (they run
from this folder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hashsdk._atomic import atomic_write

RESULTS = Path(__file__).resolve().parent / "results"


def write_json(path: Path, data: object, indent: int | None = 1) -> None:
    """``data`` as JSON into ``path``, atomically, ending in a newline."""
    with atomic_write(path) as f:
        f.write((json.dumps(data, indent=indent) + "\n").encode())


def previous_results(path: Path) -> dict:
    """A results file as written by ``write_json``, or {} where there is none yet."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def commands_with(earlier: dict, command: str) -> list[str]:
    """The commands of a results file that keeps ``earlier``'s rows: its "commands" (or its one
    "command", as older files have), a repeat of ``command`` dropped, then ``command``."""
    before = earlier.get("commands", [earlier["command"]] if "command" in earlier else [])
    return [c for c in before if c != command] + [command]


def run_minutes(run: Path) -> float:
    """A run directory's minutes of training (its history.json, one row an epoch with its
    "seconds"): the median epoch times the epochs, so that a while the machine was shared (or
    paused) does not count."""
    seconds = [row["seconds"] for row in json.loads((Path(run) / "history.json").read_text())]
    return float(np.median(seconds)) * len(seconds) / 60


def write_results(base: Path, report: dict, markdown: str | list[str]) -> None:
    """``base``.json and ``base``.md (``base`` without a suffix, or with one that is replaced);
    ``markdown`` as text or as lines."""
    text = markdown if isinstance(markdown, str) else "\n".join(markdown) + "\n"
    base = Path(base)
    write_json(base.with_suffix(".json"), report)
    with atomic_write(base.with_suffix(".md")) as f:
        f.write(text.encode())
