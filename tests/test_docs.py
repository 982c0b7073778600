"""The docs hold together: every relative link and #anchor in README.md, CHANGELOG.md and docs/ resolves, the
README stays a front door, and docs/results.md's tables are their JSON files' (benchmarks/results.py)."""
import re
from pathlib import Path

from conftest import ROOT

PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchor of every heading: lower-cased, punctuation but hyphens and spaces dropped, spaces to
    hyphens, a -1, -2, ... suffix for repeats."""
    seen, found = {}, set()
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # no headings inside code blocks
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return found


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for match in LINK.finditer(text):
            target = match.group(1) or match.group(2)
            if re.match(r"^[a-z]+://|^mailto:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and anchor not in anchors(file):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading in {file.name})")
    assert not broken, "\n".join(broken)


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv .venv")]
    assert commands[:2] == [
        "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/python -m apps.mnist",
        "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/python -m pytest"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/python -m pytest\n" in ci and ".venv/bin/python -m pytest -m long\n" in ci  # what CI runs


def test_the_docs_speak_of_the_suite_only():
    """No issue numbers, sessions or "this host today" in the docs: history belongs to the changelog and git."""
    words = re.compile(r"\bissue \d+\b|\bthis session\b|\ba (second|third) session\b|\btoday\b", re.I)
    upstream = re.compile(r"(keras|tensorboard|LiteRT|keras-team/keras|google-ai-edge/LiteRT) issue \d+", re.I)
    found = []
    for page in PAGES[:1] + PAGES[2:]:  # the changelog may tell what came when
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if words.search(upstream.sub("", line)):
                found.append(f"{page.name}:{number}: {line.strip()[:100]}")
    assert not found, "\n".join(found)


def test_the_results_tables_are_their_json_files():
    from benchmarks import results

    text = results.RESULTS.read_text()
    assert results.rebuilt(text) == text, "run python -m benchmarks.results"
    names = {m.group(2) for m in results.BLOCK.finditer(text)}
    assert names == {p.stem for p in results.RECORDS.glob("*.json")}  # every table has its record, and back
