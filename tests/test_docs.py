"""The README and docs/ say what the repository has: the settings table as the model
makes it, README short, and every file they name present.

`python -m tests.test_docs --write` rewrites the settings table between the markers
in README.md and docs/configuration.md from `vqa.settings.markdown_table()`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from vqa.settings import markdown_table

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
TABLE_FILES = (README, DOCS / "configuration.md")
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
README_MAX_LINES = 250
REGENERATE = "python -m tests.test_docs --write"

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_IMG = re.compile(r"<img\s[^>]*src=[\"']([^\"']+)[\"']", re.I)
_CODE = re.compile(r"`([^`\n]+)`")


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _table(text: str, path: Path) -> str:
    """The text between the settings-table markers (stripped)."""
    if text.count(START) != 1 or text.count(END) != 1:
        raise AssertionError(f"{path.relative_to(ROOT)}: expected one {START} and one {END} marker")
    start = text.index(START) + len(START)
    end = text.index(END)
    if end < start:
        raise AssertionError(f"{path.relative_to(ROOT)}: {END} comes before {START}")
    return text[start:end].strip()


def _with_table(text: str, table: str) -> str:
    start = text.index(START) + len(START)
    end = text.index(END)
    return text[:start] + "\n" + table + "\n" + text[end:]


def _prose(text: str) -> str:
    """The page without its fenced code blocks (examples, not names of repository files)."""
    return _FENCE.sub("", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"`|\*\*|__", "", heading.strip()).lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(page.read_text()).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = _slug(match.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(page: Path) -> list[str]:
    prose = _prose(page.read_text())
    return _LINK.findall(prose) + _IMG.findall(prose)


def _top_level() -> set[str]:
    return {p.name for p in ROOT.iterdir() if not p.name.startswith(".git")} - {"vqa.egg-info"}


def _named_paths(page: Path) -> list[str]:
    """Repository paths in `code spans`: a word starting with a top-level entry of the repo
    (`activities/policy.py`, `docker-compose.yml`, `bench/results/cost.json`)."""
    top = _top_level()
    names = []
    for span in _CODE.findall(_prose(page.read_text())):
        for word in span.split():
            word = word.strip(",;:()")
            if re.search(r"[<>*${}%|=]", word) or "://" in word:
                continue
            first = word.split("/")[0]
            if first in top and ("/" in word or "." in word):
                names.append(word)
    return names


def _modules(page: Path) -> list[str]:
    """Modules of this repository run as `python -m package.module` (code blocks included)."""
    top = _top_level()
    return [m for m in re.findall(r"python -m ([A-Za-z_][\w.]*)", page.read_text()) if m.split(".")[0] in top]


@pytest.mark.parametrize("path", TABLE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_settings_table_is_generated_from_the_model(path: Path) -> None:
    table = _table(path.read_text(), path)
    assert table == markdown_table(), (
        f"{path.relative_to(ROOT)}: the settings table differs from vqa.settings.markdown_table(); "
        f"regenerate it with `{REGENERATE}` (or paste `python -m vqa.settings --markdown`)"
    )


def test_readme_is_at_most_250_lines() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_linked_file_exists(page: Path) -> None:
    missing = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # https://, mailto: ...
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            missing.append(f"{target} (no {resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved})")
        elif not resolved.is_relative_to(ROOT):
            missing.append(f"{target} (outside the repository)")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            missing.append(f"{target} (no heading #{anchor} in {resolved.relative_to(ROOT)})")
    assert not missing, f"{page.relative_to(ROOT)} links to what is not in the repository: " + "; ".join(missing)


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_named_repository_path_exists(page: Path) -> None:
    missing = sorted({name for name in _named_paths(page) if not (ROOT / name.rstrip("/")).exists()})
    assert not missing, f"{page.relative_to(ROOT)} names files the repository does not have: {', '.join(missing)}"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_run_exists(page: Path) -> None:
    def exists(module: str) -> bool:
        base = ROOT.joinpath(*module.split("."))
        return base.with_suffix(".py").exists() or (base / "__main__.py").exists()

    missing = sorted({m for m in _modules(page) if not exists(m)})
    assert not missing, f"{page.relative_to(ROOT)} runs modules the repository does not have: {', '.join(missing)}"


def test_readme_names_nothing_outside_the_repository() -> None:
    text = README.read_text()
    for name in ("../shared", "CONTRACT.md", "STYLE.md"):
        assert name not in text, f"README.md names {name}, which is not in the repository"


def _write() -> int:
    table = markdown_table()
    for path in TABLE_FILES:
        text = path.read_text()
        _table(text, path)  # the markers must be there
        updated = _with_table(text, table)
        if updated != text:
            path.write_text(updated)
            print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        sys.exit(_write())
    print(f"usage: {REGENERATE}", file=sys.stderr)
    sys.exit(2)
