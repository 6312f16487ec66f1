"""Every command the READMEs show parses: the documented options are the ones factlab and the benchmarks take.

Only parsing is checked (nothing runs), so the commands may name files that exist only on a user's machine."""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest

from factlab.cli import parse_command_line

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "README.md", ROOT / "benchmarks" / "README.md")
OPERATORS = {"&&", "||", ";", "|", "&"}


def shell_commands(doc: Path) -> list[list[str]]:
    """The words of every command in the document's ```bash blocks (continuations joined, comments dropped)."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", doc.read_text(encoding="utf-8"), re.S | re.M):
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
    for doc in DOCS:
        name = str(doc.relative_to(ROOT))
        for words in shell_commands(doc):
            args = factlab_arguments(words)
            scripts = [w for w in words if w.startswith("benchmarks/") and w.endswith(".py")]
            if args is not None:
                factlab.append((name, args))
            elif scripts:
                benchmarks.append((name, words[words.index(scripts[0]):]))
    return factlab, benchmarks


FACTLAB, BENCHMARKS = documented_commands()


def test_the_readmes_show_commands_of_every_kind():
    verbs = {args[0] for _, args in FACTLAB if args}
    assert {"pretrain", "finetune", "evaluate", "london", "reproduce", "demo", "report", "analyze", "ask",
            "lab"} <= verbs
    assert {Path(words[0]).name for _, words in BENCHMARKS} >= {"run.py", "profile_steps.py", "ab_steps.py",
                                                                 "trainer_options.py"}


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
