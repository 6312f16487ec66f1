"""The run folders a report is made of: results.json and the files beside it (predictions, recitations,
training metrics, analyses), read and checked, each problem a one-line error naming its file.

A RUN_DIR must hold `results.json`:
    {"rows": [{"run", "variant", "correct", "total", "percent", "seconds", "params", "predictions"}, ...],
     "eval_corpus_path": ..., "corpus_path": ...}
`params` and `predictions` are file names in the RUN_DIR (or null); a checkpoint may be absent (committed
results under results/ keep none). A relative corpus path is looked up in the RUN_DIR first, then in the data
folder given (`factlab report --data_dir`: `reproduce` names files outside the RUN_DIR by their name in the data
folder), then in the current directory. An analysis file X.analysis.json belongs to the run whose
predictions or checkpoint file is X (with or without its suffix), else to the only run with the same predictions;
its risk_coverage "coverage" and "accuracy" are fractions in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import FactlabError
from ..data import Question, parse_questions
from ..io import read_json, read_jsonl, read_text

ROW_KEYS = ("run", "variant", "correct", "total", "percent", "seconds", "params", "predictions")


def resolve(run_dir: Path, name: str, data_dir: Path | None = None) -> Path:
    """A path from results.json: absolute as is; relative, the first that exists of the run dir's, the data
    folder's and the current directory's (the run dir's when none does, for the error message)."""
    path = Path(name)
    if path.is_absolute():
        return path
    found = [p for p in (run_dir / path, data_dir / path if data_dir else None, path) if p and p.exists()]
    return found[0] if found else run_dir / path


@dataclass
class Run:
    """One row of a results.json, with its predictions and analysis."""
    run_dir: Path
    row: dict
    predictions: list[str] | None = None
    recitations: list[str] | None = None  # a recite model's, from PREDICTIONS.recitations (`factlab evaluate`)
    analysis: dict | None = None
    analysis_path: Path | None = None

    @property
    def label(self) -> str:
        return f"{self.run_dir.name}: {self.row['run']}"


@dataclass
class RunDir:
    path: Path
    questions: list[Question]
    corpus_path: Path | None
    runs: list[Run]
    metrics: dict[str, list[dict]]  # checkpoint name -> steps
    analyses: list[tuple[Path, dict]] = field(default_factory=list)


def load_run_dir(path, data_dir=None) -> RunDir:
    path = Path(path)
    data_dir = Path(data_dir) if data_dir else None
    if not path.is_dir():
        raise FactlabError(f"{path}: not a directory (a RUN_DIR holds results.json)")
    results_path = path / "results.json"
    if not results_path.is_file():
        raise FactlabError(f"{path}: no results.json (written by `factlab demo` and `factlab reproduce`)")
    results = read_json(results_path)
    if not isinstance(results, dict) or not isinstance(results.get("rows"), list):
        raise FactlabError(f"{results_path}: expected an object with a list of \"rows\"")
    for i, row in enumerate(results["rows"]):
        missing = [k for k in ROW_KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise FactlabError(f"{results_path}: row {i} lacks {', '.join(missing)}")
        correct, total = row["correct"], row["total"]
        if not (isinstance(correct, int) and isinstance(total, int) and 0 <= correct <= total):
            raise FactlabError(f"{results_path}: row {i}: correct and total must be integers, 0 <= correct <= total")
    if not isinstance(results.get("eval_corpus_path"), str):
        raise FactlabError(f"{results_path}: no \"eval_corpus_path\"")
    eval_path = resolve(path, results["eval_corpus_path"], data_dir)
    questions = parse_questions(read_text(eval_path), str(eval_path), require_answers=False)
    corpus = results.get("corpus_path")
    runs = []
    for row in results["rows"]:
        run = Run(path, row)
        if row["predictions"]:
            run.predictions = read_predictions(path / row["predictions"], len(questions), eval_path)
            recited = path / f"{row['predictions']}.recitations"
            if recited.is_file():
                run.recitations = read_predictions(recited, len(questions), eval_path, what="recitations")
        runs.append(run)
    metrics = {p.name.removesuffix(".metrics.jsonl"): read_jsonl(p) for p in sorted(path.glob("*.metrics.jsonl"))}
    run_dir = RunDir(path, questions, resolve(path, corpus, data_dir) if corpus else None, runs, metrics)
    for analysis_path in sorted(path.glob("*.analysis.json")):
        analysis = read_analysis(analysis_path)
        run_dir.analyses.append((analysis_path, analysis))
        match = match_analysis(analysis_path, analysis, runs)
        if match is not None:
            match.analysis, match.analysis_path = analysis, analysis_path
    return run_dir


def read_predictions(path: Path, n_questions: int, eval_path: Path, what: str = "predictions") -> list[str]:
    """One answer (or recitation) a line, as `factlab evaluate` writes them, one per question."""
    lines = [line.removesuffix("\r") for line in read_text(path, allow_empty=True).split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != n_questions:
        raise FactlabError(f"{path}: {len(lines)} {what} for the {n_questions} questions of {eval_path}")
    return lines


def read_analysis(path: Path) -> dict:
    analysis = read_json(path)
    if not isinstance(analysis, dict) or not isinstance(analysis.get("records"), list):
        raise FactlabError(f"{path}: expected an object with a list of \"records\"")
    rc = analysis.get("risk_coverage")
    if rc is not None and (not isinstance(rc, dict) or len(rc.get("coverage", [])) != len(rc.get("accuracy", []))):
        raise FactlabError(f"{path}: risk_coverage needs \"coverage\" and \"accuracy\" lists of equal length")
    return analysis


def match_analysis(path: Path, analysis: dict, runs: list[Run]) -> Run | None:
    """The run an analysis file belongs to: by name (X.analysis.json for X the run's predictions or checkpoint
    file, with or without its suffix), else the only run whose predictions are the analysis's predictions."""
    stem = path.name.removesuffix(".analysis.json")
    for run in runs:
        names = {run.row["run"]}
        for key, suffix in (("predictions", ".predictions"), ("params", ".params")):
            if run.row[key]:
                names |= {run.row[key], run.row[key].removesuffix(suffix)}
        if stem in names:
            return run
    predictions = [r.get("prediction") for r in analysis["records"]]
    same = [run for run in runs if run.predictions == predictions]
    return same[0] if len(same) == 1 else None
