"""Every relative link in the README and docs/ leads to a file that exists: pages move (the
channel pages went into docs/channels/), and a reader following a dead link is lost."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_relative_links_lead_somewhere() -> None:
    pages = [
        ROOT / "README.md",
        ROOT / "bench" / "README.md",
        *sorted((ROOT / "docs").rglob("*.md")),
    ]
    dead, checked = [], 0
    for page in pages:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "mailto:", "#")):
                continue
            path = target.split("#", 1)[0]
            checked += 1
            if path and not (page.parent / path).exists():
                dead.append(f"{page.relative_to(ROOT)}: {target}")
    assert len(pages) > 20 and checked > 50, "the links were not found"
    assert dead == []
