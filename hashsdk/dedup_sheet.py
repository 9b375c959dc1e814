"""A picture of ``hashsdk dedup``'s groups: a contact sheet to look over before deleting.

Layout: one row a group, in the report's order (largest first), at most ``groups`` rows; a
label column on the left (the group's number and size), then each member as a ``thumb`` px
square cell, at most ``per_row`` of them (the row's last cell then says how many more), the
image fitted inside it with its aspect kept, and beneath it the member's file name (cut to
the cell's width) and its Hamming distance to the group's first member (d=0 for the first).
The sheet is as wide as its longest row. A member whose file cannot be read gets a grey
cell that says so. RGB PNG, written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from PIL import Image, ImageDraw

from hashsdk._atomic import atomic_write
from hashsdk.errors import HashsdkError

THUMB = 96         # a cell's image side, pixels
CAPTION = 28       # two lines under each cell: the file name, the distance
LABEL = 112        # the group label column
GAP = 4            # between cells and rows
BACKGROUND = (255, 255, 255)
MISSING = (200, 200, 200)
INK = (0, 0, 0)
NO_PATHS = ("a picture of the groups needs the images' paths: this index stores none (build "
            "it with `hashsdk index build` from a folder)")


def contact_sheet(doc: dict, load: Callable[[str], Image.Image], groups: int = 20,
                  per_row: int = 8, thumb: int = THUMB) -> Image.Image:
    """The sheet of ``doc`` (dedup.report's document) as an RGB image of
    (LABEL + cells * (thumb + GAP)) x (rows * (thumb + CAPTION + GAP)) pixels, rows =
    min(groups, the document's groups), cells = min(per_row, the largest shown group's size).
    ``load(path)`` gives a member's image; what it raises leaves that cell grey. Raises
    HashsdkError where the document has no groups or a member has no path (an index saved
    without them)."""
    if groups < 1 or per_row < 2 or thumb < 16:
        raise HashsdkError(f"a sheet needs groups >= 1, per_row >= 2 and thumb >= 16, got "
                           f"{groups}, {per_row}, {thumb}")
    shown = doc["members"][:groups]
    if not shown:
        raise HashsdkError("no groups of duplicates to picture")
    if any(m["path"] is None for g in shown for m in g["members"]):
        raise HashsdkError(NO_PATHS)
    row_h = thumb + CAPTION + GAP
    cells = min(per_row, max(len(g["members"]) for g in shown))
    sheet = Image.new("RGB", (LABEL + cells * (thumb + GAP), len(shown) * row_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for r, group in enumerate(shown):
        members, top = group["members"], r * row_h
        more = len(members) - per_row + 1  # what the row's last cell stands for, where > 1
        draw.text((4, top + 4), f"group {r}\n{len(members)} images", fill=INK)
        for k, member in enumerate(members[:per_row]):
            left = LABEL + k * (thumb + GAP)
            if k == per_row - 1 and more > 1:  # the last cell stands for the rest
                draw.text((left + 4, top + thumb // 2), f"+{more} more", fill=INK)
                break
            _paste_cell(sheet, draw, member["path"], load, left, top, thumb)
            name = os.path.basename(member["path"])[:thumb // 6]  # the default font: 6 px
            draw.text((left + 2, top + thumb + 2), f"{name}\nd={member['distance']}", fill=INK)
    return sheet


def _paste_cell(sheet: Image.Image, draw: ImageDraw.ImageDraw, path: str,
                load: Callable[[str], Image.Image], left: int, top: int, thumb: int) -> None:
    """One member's image fitted into the thumb x thumb cell at (left, top), centred; a grey
    cell where it cannot be loaded."""
    try:
        image = load(path).convert("RGB")
    except Exception:  # an unreadable member must not cost the picture of the rest
        draw.rectangle((left, top, left + thumb - 1, top + thumb - 1), fill=MISSING)
        draw.text((left + 4, top + 4), "unreadable", fill=INK)
        return
    scale = thumb / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = image.resize(size, Image.BILINEAR)
    sheet.paste(small, (left + (thumb - size[0]) // 2, top + (thumb - size[1]) // 2))


def write_sheet(path: str | os.PathLike, doc: dict, load: Callable[[str], Image.Image],
                groups: int = 20) -> int:
    """``contact_sheet`` written to ``path`` as PNG, atomically; returns the rows drawn."""
    sheet = contact_sheet(doc, load, groups)
    with atomic_write(path) as f:
        sheet.save(f, format="PNG")
    return min(groups, len(doc["members"]))
