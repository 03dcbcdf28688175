"""Every relative link in README.md and docs/*.md names a file of the repository."""

import re

from tests.conftest import REPO
from tests.doc_commands import DOCS

# written on another branch at the time of writing; drop it from here once it is merged
PENDING: set[str] = set()


def test_relative_links_resolve():
    missing = []
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            resolved = (path.parent / target).resolve()
            if not resolved.exists() and str(resolved.relative_to(REPO)) not in PENDING:
                missing.append(f"{path.name}: {target}")
    assert not missing, missing


def test_every_docs_page_is_linked_from_the_readme():
    readme = (REPO / "README.md").read_text()
    assert [p.name for p in DOCS[1:] if f"(docs/{p.name})" not in readme] == []
