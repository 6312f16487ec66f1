"""The documentation holds: every command it shows parses, and every link in it resolves.

The pages are README.md, docs/*.md and benchmarks/README.md. Only parsing is checked (nothing runs), so the
commands may name files that exist only on a user's machine. Links are checked against the repository: a
relative link must name a file or folder that exists, and a #fragment must name a heading of the page it points to.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest

from factlab.cli import parse_command_line

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md")
DOC_IDS = [str(doc.relative_to(ROOT)) for doc in DOCS]
OPERATORS = {"&&", "||", ";", "|", "&"}
README_MAX_LINES = 200  # the README is the first screen and the map; the rest belongs in docs/


def bash_blocks(doc: Path) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", doc.read_text(encoding="utf-8"), re.S | re.M)


def shell_commands(doc: Path) -> list[list[str]]:
    """The words of every command in the document's ```bash blocks (continuations joined, comments dropped)."""
    commands = []
    for block in bash_blocks(doc):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words: list[str] = []
            for token in [*lexer, ";"]:
                if token not in OPERATORS:
                    words.append(token)
                elif words:
                    commands.append(words)
                    words = []
    return commands


def factlab_arguments(words: list[str]) -> list[str] | None:
    """The arguments given to factlab, for `factlab ...`, `python -m factlab.cli ...` or `torchrun ... -m factlab.cli`."""
    while words and re.fullmatch(r"[A-Za-z_]\w*=\S*", words[0]):  # environment settings before the command
        words = words[1:]
    if words and words[0].endswith("factlab"):
        return words[1:]
    for i in range(len(words) - 1):
        if words[i] == "-m" and words[i + 1] in ("factlab", "factlab.cli"):
            return words[i + 2:]
    return None


def documented_commands() -> tuple[list[tuple[str, list[str]]], list[tuple[str, list[str]]]]:
    """(document, factlab's arguments) and (document, benchmark script and its arguments) for every command shown."""
    factlab, benchmarks = [], []
    for doc, name in zip(DOCS, DOC_IDS):
        for words in shell_commands(doc):
            args = factlab_arguments(words)
            scripts = [w for w in words if w.startswith("benchmarks/") and w.endswith(".py")]
            if args is not None:
                factlab.append((name, args))
            elif scripts:
                benchmarks.append((name, words[words.index(scripts[0]):]))
    return factlab, benchmarks


FACTLAB, BENCHMARKS = documented_commands()


def test_the_pages_show_commands_of_every_kind():
    verbs = {args[0] for _, args in FACTLAB if args}
    assert {"pretrain", "finetune", "evaluate", "london", "reproduce", "demo", "report", "analyze", "ask",
            "lab", "split", "snapshot"} <= verbs
    assert {Path(words[0]).name for _, words in BENCHMARKS} >= {"run.py", "profile_steps.py", "ab_steps.py",
                                                                 "trainer_options.py", "mixed_pretraining.py",
                                                                 "levers.py", "epoch_losses.py"}
    assert any(args[0] == "pretrain" for doc, args in FACTLAB if doc == "README.md")


@pytest.mark.parametrize("doc,args", FACTLAB, ids=[" ".join(a)[:80] for _, a in FACTLAB])
def test_documented_factlab_command_parses(doc, args):
    try:
        parsed = parse_command_line(args)
    except SystemExit as stop:
        pytest.fail(f"{doc}: `factlab {' '.join(args)}` does not parse (exit {stop.code})")
    assert parsed.verb == args[0]


class Parsed(Exception):
    """Raised in place of running a benchmark once its arguments have parsed."""


@pytest.mark.parametrize("doc,words", BENCHMARKS, ids=[" ".join(w)[:80] for _, w in BENCHMARKS])
def test_documented_benchmark_command_parses(doc, words, monkeypatch):
    parse_args = argparse.ArgumentParser.parse_args

    def parse_then_stop(parser, args=None, namespace=None):
        raise Parsed(parse_args(parser, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    script = importlib.import_module(Path(words[0]).stem)  # conftest puts benchmarks/ on sys.path
    try:
        script.main(words[1:])
    except SystemExit as stop:
        pytest.fail(f"{doc}: `python {' '.join(words)}` does not parse (exit {stop.code})")
    except Parsed as parsed:
        assert isinstance(parsed.args[0], argparse.Namespace)
    else:
        pytest.fail(f"{doc}: {words[0]} ran without parsing its arguments with argparse")


@pytest.mark.parametrize("doc", DOCS, ids=DOC_IDS)
def test_the_data_folder_is_defined_before_it_is_used(doc):
    """A page's commands can be pasted into a fresh shell: `D=...` comes before the first `$D`."""
    text = "\n".join(bash_blocks(doc))
    if "$D" in text:
        definition = re.search(r"^D=\S+", text, re.M)
        assert definition, f"{doc.relative_to(ROOT)} uses $D in its commands but never sets D="
        assert definition.start() < text.index("$D"), f"{doc.relative_to(ROOT)} uses $D before it sets D="


# ---- links -----------------------------------------------------------------------------------------------------

def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def links(doc: Path) -> list[str]:
    """The targets of the page's markdown links and images, `[text](target)`."""
    return re.findall(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose(doc.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (letters, digits, _ and - kept), spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings; repeated headings get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


LINKS = [(doc, target) for doc in DOCS for target in links(doc)
         if not re.match(r"[a-z][a-z0-9+.-]*:", target)]  # http(s), mailto: the web is not checked here


def test_the_pages_link_to_each_other():
    assert len(LINKS) > 2 * len(DOCS), "the link check found few links: is the link pattern still right?"
    assert "docs/README.md" in links(ROOT / "README.md"), "README.md does not link to the docs index"
    for doc in DOCS[1:]:
        assert any(not re.match(r"[a-z][a-z0-9+.-]*:", t) for t in links(doc)), (
            f"{doc.relative_to(ROOT)} links to no other page")


@pytest.mark.parametrize("doc,target", LINKS, ids=[f"{d.relative_to(ROOT)}: {t}"[:100] for d, t in LINKS])
def test_relative_link_resolves(doc, target):
    name = doc.relative_to(ROOT)
    path, _, fragment = target.partition("#")
    page = (doc.parent / path).resolve() if path else doc
    assert page.is_relative_to(ROOT), f"{name}: {target} points outside the repository"
    assert page.exists(), f"{name}: {target} names {page.relative_to(ROOT)}, which does not exist"
    if fragment and page.suffix == ".md":
        assert fragment in anchors(page), (f"{name}: {target}: {page.relative_to(ROOT)} has no heading "
                                           f"#{fragment} (it has {', '.join(sorted(anchors(page)))})")


def test_the_docs_index_lists_every_page():
    index = ROOT / "docs" / "README.md"
    listed = {(index.parent / target.partition("#")[0]).resolve() for target in links(index)}
    pages = {page.resolve() for page in (ROOT / "docs").glob("*.md")} - {index.resolve()}
    assert pages, "docs/ has no pages"
    assert not pages - listed, f"docs/README.md does not list {sorted(p.name for p in pages - listed)}"


def test_every_docs_page_starts_with_a_title_and_what_it_covers():
    for page in (ROOT / "docs").glob("*.md"):
        lines = page.read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith("# "), f"{page.name} does not start with a title"
        assert len(lines) > 2 and lines[1] == "" and lines[2] and not lines[2].startswith(("#", "```", "|")), (
            f"{page.name}: the title is not followed by a sentence saying what the page covers")


def test_the_readme_stays_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/"


@pytest.mark.parametrize("page, runs", [("selection.md", "levers"), ("finetuning.md", "course-ft")])
def test_a_lever_table_in_the_docs_is_the_generated_one(page, runs):
    """A page's lever table is the one `levers.py --table --doc` writes, the same as results/RUNS/levers.md but
    for its links, so the page cannot fall behind the measured runs."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    generated = (ROOT / "results" / runs / "levers.md").read_text(encoding="utf-8")
    start = text.index("| lever |")
    in_page = text[start:text.index("\n\n", start) + 1]
    assert in_page.replace(f"](../results/{runs}/", "](") == generated
