"""The README as the front door: short, and its links name files of the repository (the site's
pages check their own links: `make docs` builds them with --strict; nothing else reads these)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_stays_the_front_door_at_most_250_lines():
    assert len(README.read_text().splitlines()) <= 250


def test_each_link_of_the_readme_names_a_file_that_exists():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if "://" not in link]
    assert len(local) > 20  # the pages of docs/
    assert [link for link in local if not (README.parent / link).is_file()] == []
