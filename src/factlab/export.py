"""`factlab export`: the small outputs of a run folder, as the repository keeps them under results/RUN.

Kept: results.json and results.md (written again from results.json's rows, in today's table), every predictions
and recitations file (the model's words), every analysis with its paths cut to file names and without the fields that quote the data (the question, the name, the gold
answer, the nearest training name and its answer: `factlab report --data_dir` reads them from the data again),
and the training curves
(`*.metrics.jsonl`) thinned to at most METRICS_ROWS evenly spaced steps (the last one always kept), which
`factlab report` draws as it draws the full ones. Left out: checkpoints, training states, TensorBoard events, logs,
and the question files a validation split wrote: the real data is never copied into the repository.
results.json says which curves were thinned and from how many steps.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import FactlabError
from .io import read_json, read_jsonl, read_text, write_text_atomic

METRICS_ROWS = 1000
KEPT = ("*.predictions", "*.recitations")
DATA_FIELDS = ("question", "name", "gold", "nearest_train_name", "nearest_train_answer")  # of analysis records


def thinned(rows: list[dict], at_most: int = METRICS_ROWS) -> list[dict]:
    """At most `at_most` of the rows, evenly spaced, the first and the last included."""
    if len(rows) <= at_most:
        return rows
    step = (len(rows) - 1) / (at_most - 1)
    return [rows[round(i * step)] for i in range(at_most)]


def file_names(value):
    """`value` (an analysis's meta or summary) with every absolute path in it (the checkpoints, the data files,
    the file a calibration was fitted on) cut to the file's name: where a run lived on its machine means nothing
    in the repository. The records are left alone: a model's answer is never a path, even if it looks like one."""
    if isinstance(value, dict):
        return {key: file_names(v) for key, v in value.items()}
    if isinstance(value, list):
        return [file_names(v) for v in value]
    return Path(value).name if isinstance(value, str) and Path(value).is_absolute() else value


def export(run_dir, to) -> list[Path]:
    """Copy the run folder's small outputs into `to` (created; files already there are replaced, others kept)."""
    run, out = Path(run_dir), Path(to)
    if not (run / "results.json").is_file():
        raise FactlabError(f"{run}: no results.json (written by `factlab reproduce` and `factlab demo`)")
    if out.resolve() == run.resolve():
        raise FactlabError(f"{out}: is the run folder itself; export to another folder")
    results = read_json(run / "results.json")
    written = []
    for pattern in KEPT:
        for path in sorted(run.glob(pattern)):
            write_text_atomic(out / path.name, read_text(path, allow_empty=True))
            written.append(out / path.name)
    for path in sorted(run.glob("*.analysis.json")):
        analysis = read_json(path)
        for record in analysis.get("records", []):
            for key in DATA_FIELDS:
                record.pop(key, None)
        for part in ("meta", "summary"):
            if part in analysis:
                analysis[part] = file_names(analysis[part])
        write_text_atomic(out / path.name, json.dumps(analysis, ensure_ascii=False, indent=1) + "\n")
        written.append(out / path.name)
    curves = {}
    for path in sorted(run.glob("*.metrics.jsonl")):
        rows = read_jsonl(path)
        kept = thinned(rows, METRICS_ROWS)
        write_text_atomic(out / path.name, "".join(json.dumps(r) + "\n" for r in kept))
        written.append(out / path.name)
        curves[path.name] = {"rows": len(kept), "of": len(rows)}
    results["exported"] = {"metrics": curves, "left_out": "checkpoints, training states, logs, split question files",
                           "analysis_fields_removed": list(DATA_FIELDS)}
    write_text_atomic(out / "results.json", json.dumps(results, indent=1) + "\n")
    from .reproduce import results_markdown  # torch comes with it: only when a run is exported

    write_text_atomic(out / "results.md", results_markdown(results.get("rows", []), results.get("scored_on", "dev")) + "\n")
    return [out / "results.json", out / "results.md", *written]
