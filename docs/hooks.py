"""MkDocs hooks: the site's home page is README.md, and the repository files that the pages
show or link (result figures and tables, the example) are served at their repository paths.

Pages are written to read well on GitHub too: README.md links ``docs/PAGE.md`` and the pages
under docs/ link ``../benchmarks/results/FILE``. In the site every page sits at the root, so
those prefixes are dropped before MkDocs resolves (and, with --strict, checks) the links.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
SERVED = ("benchmarks/results/**/*.png", "benchmarks/results/**/*.json",
          "examples/*.py")
GENERATED = {"index.md": "README.md", "changelog.md": "CHANGELOG.md"}


def on_files(files: Files, config) -> Files:
    for uri, source in GENERATED.items():
        files.append(File.generated(config, uri, content=(ROOT / source).read_text()))
    for pattern in SERVED:
        for path in sorted(ROOT.glob(pattern)):
            rel = path.relative_to(ROOT).as_posix()
            # served as they are (a results .md is a file to download, not a page)
            files.append(File(rel, str(ROOT), config["site_dir"], False, dest_uri=rel))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri == "index.md":  # README.md: its docs/ links point at the pages
        markdown = re.sub(r"\]\(docs/", "](", markdown)
        return markdown.replace("](CHANGELOG.md)", "](changelog.md)")
    return re.sub(r"\]\(\.\./", "](", markdown)
