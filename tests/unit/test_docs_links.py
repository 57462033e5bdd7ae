"""The README is the front door and docs/ holds the reference: what a reader following them meets.

Every relative link in README.md and docs/*.md leads to a file that exists and, with a #fragment, to a
heading of that file, and every path of ours they name in backticks exists (files move in a
restructuring) (GitHub's anchor rule: lowercase, punctuation dropped, spaces to hyphens); the
README links every docs page; the README's two commands are the Makefile's targets; every
``TOKENTOP_*`` variable declared in engine/settings.py is documented in docs/environment.md.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
# A path of ours in backticks: `engine/load/runner.py`, `tests/e2e/test_cli_width.py`, `data/store/migrations/`.
OUR_PATH = re.compile(r"`((?:engine|data|tui|pricing|tests|benchmarks|scripts|docs)/[\w./-]*)`")
# Paths the pages name that are not ours to have: vLLM's files, and the two modules the engine.load
# package replaced (layout.md says why its contract exists).
NOT_OURS = {
    "benchmarks/multi_turn/convert_sharegpt_to_openai.py",  # vLLM's
    "benchmarks/lib/endpoint_request_func.py",  # vLLM's
    "engine/load.py",
    "engine/client_pool.py",
}


def _anchors(path: Path) -> set[str]:
    out, fence = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_every_relative_link_and_named_path_in_readme_and_docs_leads_somewhere() -> None:
    assert len(PAGES) > 1, "no reference pages in docs/"
    broken = []
    for page in PAGES:
        for path in OUR_PATH.findall(page.read_text(encoding="utf-8")):
            if path not in NOT_OURS and not (ROOT / path).exists():
                broken.append(f"{page.relative_to(ROOT)}: `{path}` (no such file: moved?)")
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "mailto:")) or "shared/" in target:
                continue  # ../shared/ lives beside the repository, not in it
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_readme_is_a_front_door_to_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pages = sorted((ROOT / "docs").glob("*.md"))
    assert any(p.name == "layout.md" for p in pages), "docs/layout.md: the code's shape"
    unlinked = [p.name for p in pages if f"docs/{p.name}" not in readme]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"
    for p in pages:
        lines = p.read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith("# ") and lines[1] == "" and lines[2].strip(), p.name
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("run", "test"):  # the two commands, kept true
        assert f"make {target}" in readme
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no {target} target"
    assert "bash scripts/setup.sh" in readme and (ROOT / "scripts" / "setup.sh").exists()


def test_every_tokentop_variable_is_documented() -> None:
    env_page = (ROOT / "docs" / "environment.md").read_text(encoding="utf-8")
    missing = [f.metadata["env"] for f in fields(Settings) if f"`{f.metadata['env']}`" not in env_page]
    assert not missing, f"TOKENTOP_* variables not in docs/environment.md: {missing}"
