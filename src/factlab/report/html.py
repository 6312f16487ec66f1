"""The report's page: its style, script, tables and sections, put together from the run folders (runs.py), the
figures (plots.py) and the attention maps (attention.py).

The page holds the results table with 95% Wilson intervals, the training curves of every `*.metrics.jsonl`, the
risk-coverage plot of every `*.analysis.json` (written by `factlab analyze`), attention maps of each model for one
question, and a filterable table of every prediction (with the recitation, for a model that answers by
recitation: the file PREDICTIONS.recitations that `factlab evaluate` writes beside its predictions). Plots are
matplotlib PNGs embedded as base64 and the filter is a few lines of inline JavaScript: the page loads nothing from
anywhere else.
"""

from __future__ import annotations

import html
from pathlib import Path

from .. import FactlabError
from ..data import Question
from ..experiment import check_output_path
from ..io import write_text_atomic
from ..statistics import wilson_interval
from .attention import attention
from .plots import attention_figure, reliability_plot, results_plot, risk_coverage_plot, training_curves_plot
from .runs import Run, RunDir, load_run_dir


def esc(value) -> str:
    return html.escape(str(value))


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.wrong td.pred { color: #a00; }
tr.right td.pred { color: #060; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
img.full { max-width: none; }
.note { color: #555; font-style: italic; }
.scroll { overflow-x: auto; }
td.recited { font-size: 0.85em; color: #444; max-width: 40em; }
"""

FILTER_JS = """
(function () {
  var box = document.getElementById("filter"), wrongOnly = document.getElementById("wrong-only");
  var shown = document.getElementById("shown");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#predictions tbody tr"));
  function apply() {
    var text = box.value.trim().toLowerCase(), n = 0;
    rows.forEach(function (row) {
      var show = (!text || row.textContent.toLowerCase().indexOf(text) >= 0) &&
                 (!wrongOnly.checked || row.getAttribute("data-correct") === "0");
      row.hidden = !show;
      if (show) n++;
    });
    shown.textContent = n + " of " + rows.length + " rows shown";
  }
  box.addEventListener("input", apply);
  wrongOnly.addEventListener("change", apply);
  apply();
})();
"""


def results_table(runs: list[Run]) -> str:
    out = ["<table id=\"results\"><thead><tr><th>run dir</th><th>run</th><th>variant</th><th>dev exact match</th>"
           "<th>95% interval (Wilson)</th><th>time</th><th>checkpoint</th></tr></thead><tbody>"]
    for run in runs:
        r = run.row
        if r["total"]:
            lo, hi = wilson_interval(r["correct"], r["total"])
            score = f"{r['correct']}/{r['total']} = {100 * r['correct'] / r['total']:.1f}%"
            interval = f"{100 * lo:.1f}–{100 * hi:.1f}%"
        else:
            score = interval = "–"
        seconds = f"{r['seconds']:.0f} s" if isinstance(r["seconds"], (int, float)) else "–"
        out.append(f"<tr><td>{esc(run.run_dir.name)}</td><td>{esc(r['run'])}</td><td>{esc(r['variant'])}</td>"
                   f"<td class=\"num\">{score}</td><td class=\"num\">{interval}</td><td class=\"num\">{seconds}</td>"
                   f"<td>{esc(r['params'] or '–')}</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def confidence_of(run: Run, index: int, question: Question):
    if run.analysis is None:
        return None
    records = run.analysis["records"]
    if len(records) != len(run.predictions or records) or index >= len(records):
        raise FactlabError(f"{run.analysis_path}: {len(records)} records for {len(run.predictions)} predictions")
    record = records[index]
    if record.get("question") not in (None, question.question):
        raise FactlabError(f"{run.analysis_path}: record {index} is about {record.get('question')!r}, "
                           f"not {question.question!r}")
    return record.get("confidence")


def predictions_table(run_dirs: list[RunDir]) -> str:
    has_confidence = any(run.analysis is not None for d in run_dirs for run in d.runs)
    head = "<th>run</th><th>#</th><th>question</th><th>gold</th><th>prediction</th><th>correct</th>"
    head += "<th>confidence</th>" if has_confidence else ""
    has_recitations = any(run.recitations is not None for d in run_dirs for run in d.runs)
    head += "<th>recitation (what the model wrote before answering)</th>" if has_recitations else ""
    out = ["<p><label>Filter: <input id=\"filter\" type=\"search\" placeholder=\"run, name, place…\"></label> "
           "<label><input id=\"wrong-only\" type=\"checkbox\"> wrong only</label> <span id=\"shown\"></span></p>",
           f"<div class=\"scroll\"><table id=\"predictions\"><thead><tr>{head}</tr></thead><tbody>"]
    for d in run_dirs:
        for run in d.runs:
            predictions = run.predictions
            if predictions is None and run.analysis is not None:
                predictions = [r.get("prediction", "") for r in run.analysis["records"]]
            for i, (q, p) in enumerate(zip(d.questions, predictions or [])):
                correct = None if q.answer is None else p == q.answer
                css, flag = {None: ("", ""), True: ("right", "1"), False: ("wrong", "0")}[correct]
                mark = {None: "–", True: "✓", False: "✗"}[correct]
                cells = (f"<td>{esc(run.label)}</td><td class=\"num\">{i + 1}</td><td>{esc(q.question)}</td>"
                         f"<td>{esc(q.answer or '–')}</td><td class=\"pred\">{esc(p)}</td><td>{mark}</td>")
                if has_confidence:
                    c = confidence_of(run, i, q)
                    cells += f"<td class=\"num\">{f'{c:.3f}' if isinstance(c, (int, float)) else '–'}</td>"
                if has_recitations:
                    cells += f"<td class=\"recited\">{esc(run.recitations[i]) if run.recitations else '–'}</td>"
                out.append(f"<tr class=\"{css}\" data-correct=\"{flag}\">{cells}</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def attention_section(run_dir: RunDir, run: Run, question: str) -> str:
    seen = attention(run_dir, run, question)
    config = seen.config
    kind = {"vanilla": "Self-attention, per layer and head",
            "rope": "Self-attention with rotary position embeddings (queries and keys rotated by position), per "
                    "layer and head",
            "synthesizer": "Synthesized weights softmax(ReLU(X A<sub>i</sub> + b<sub>1</sub>) "
                           + ("B<sub>i</sub>" if config.synthesizer_b == "per-head" else "B")
                           + " + b<sub>2</sub>), per layer and head",
            "perceiver": f"Cross-attention of the {config.bottleneck_dim} latents to the input (down_block), "
                         "self-attention among the latents (blocks), and of the input to the latents (up_block)"}
    return (f"<h3>{esc(run.label)} <small>({esc(run.row['params'])}, {config.variant}, {config.n_layer} layers, "
            f"{config.n_head} heads)</small></h3>\n"
            f"<p>{kind[config.variant]}. Greedy answer: <b>{esc(seen.answer) or '(empty)'}</b>. The input is the "
            f"{seen.answer_format.read_words}, its ⁇ and the answer: "
            f"what the model read when it closed its answer. One panel per module "
            f"(row) and head (column); in each, rows are queries and columns keys (labelled in the row's first panel), "
            f"and colour is the weight (0 to 1, square-root scale).</p>\n"
            f"<div class=\"scroll\"><img class=\"full\" alt=\"attention maps of {esc(run.label)}\" "
            f"src=\"{attention_figure(seen.maps, seen.chars, config.bottleneck_dim)}\"></div>")


def build_report(run_dir_paths, question: str | None = None, data_dir=None) -> str:
    """The HTML text of the report on the given run directories."""
    run_dirs = [load_run_dir(p, data_dir) for p in run_dir_paths]
    runs = [run for d in run_dirs for run in d.runs]
    if question is None:
        question = run_dirs[0].questions[0].question
    names = ", ".join(str(d.path) for d in run_dirs)
    parts = [f"<h1>factlab report</h1>\n<p>Run directories: {esc(names)}.</p>"]

    parts.append("<h2>Results</h2>\n<p>Exact match on each run's evaluation file. The interval is the 95% Wilson "
                 "score interval of the proportion correct.</p>")
    parts.append(results_table(runs))
    if any(r.row["total"] for r in runs):
        parts.append(f"<img alt=\"results with 95% intervals\" src=\"{results_plot(runs)}\">")

    parts.append("<h2>Training curves</h2>")
    for d in run_dirs:
        if any(any("loss" in s for s in steps) for steps in d.metrics.values()):
            parts.append(f"<p>{esc(d.path.name)}: training loss per step (log scale) and learning rate (dashed), "
                         f"from each <code>*.metrics.jsonl</code>.</p>")
            parts.append(f"<img alt=\"training curves of {esc(d.path.name)}\" "
                         f"src=\"{training_curves_plot(d.metrics)}\">")
        else:
            parts.append(f"<p class=\"note\">{esc(d.path.name)}: no training metrics (*.metrics.jsonl).</p>")

    parts.append("<h2>Risk–coverage</h2>")
    analyses = [(run.label, run.analysis) for run in runs if run.analysis is not None]
    matched = {id(a) for _, a in analyses}
    analyses += [(f"{d.path.name}: {p.name}", a) for d in run_dirs for p, a in d.analyses if id(a) not in matched]
    curves = [(label, a["risk_coverage"]) for label, a in analyses if a.get("risk_coverage")]
    if curves:
        parts.append("<p>Questions sorted by the model's confidence in its answer: accuracy on the most confident "
                     "fraction answered. From the <code>*.analysis.json</code> files of "
                     "<code>factlab analyze</code>.</p>")
        parts.append(f"<img alt=\"risk-coverage\" src=\"{risk_coverage_plot(curves)}\">")
        rows = "".join(f"<tr><td>{esc(label)}</td>" + "".join(
            f"<td class=\"num\">{rc[k]:.3f}</td>" if isinstance(rc.get(k), (int, float)) else "<td>–</td>"
            for k in ("aurc", "accuracy_at_50", "accuracy_at_50_best", "accuracy_full")) + "</tr>"
            for label, rc in curves)
        parts.append("<table id=\"risk-coverage\"><thead><tr><th>analysis</th><th>AURC</th><th>accuracy at 50% "
                     "coverage</th><th>best possible at 50% coverage</th><th>accuracy at full coverage</th></tr>"
                     f"</thead><tbody>{rows}</tbody></table>")
    else:
        parts.append("<p class=\"note\">No analysis file (<code>*.analysis.json</code>, written by <code>factlab "
                     "analyze</code>) in these run directories: no risk–coverage plot, and the predictions table "
                     "has no confidence column.</p>")

    parts += calibration_section(analyses)

    parts.append(f"<h2>Attention maps</h2>\n<p>Question: <b>{esc(question)}</b></p>")
    with_model = [(d, run) for d in run_dirs for run in d.runs
                  if run.row["params"] and (d.path / run.row["params"]).is_file()]
    for d, run in with_model:
        parts.append(attention_section(d, run, question))
    if not with_model:
        parts.append("<p class=\"note\">No checkpoint in these run directories (committed results keep "
                     "none).</p>")

    parts.append("<h2>Predictions</h2>")
    parts.append(predictions_table(run_dirs))

    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>factlab report</title>\n"
            f"<style>{CSS}</style></head>\n<body>\n{body}\n<script>{FILTER_JS}</script>\n</body></html>\n")


def calibration_section(analyses: list[tuple[str, dict]]) -> list[str]:
    """The reliability diagrams and ECEs of the analyses that have them (`factlab analyze` writes them; with
    --calibrate_on, also after Platt scaling)."""
    found = [(label, a["summary"]["calibration"]) for label, a in analyses
             if isinstance(a.get("summary"), dict) and isinstance(a["summary"].get("calibration"), dict)]
    if not found:
        return []
    rows = "".join(f"<tr><td>{esc(label)}</td><td class=\"num\">{cal['ece']:.3f}</td><td class=\"num\">"
                   + (f"{cal['ece_calibrated']:.3f}" if cal.get("platt") else "–") + "</td><td>"
                   + (esc(f"Platt a {cal['platt']['a']:.3g}, b {cal['platt']['b']:.3g}, fitted on "
                          f"{cal['platt']['n']} answers of {cal['platt']['fitted_on']}") if cal.get("platt") else "–")
                   + "</td></tr>" for label, cal in found)
    return ["<h2>Calibration</h2>",
            "<p>Answers binned by confidence: a calibrated model's accuracy in each bin equals its mean confidence "
            "(the diagonal). ECE: the answers' share in each bin times the gap, summed.</p>",
            f"<img alt=\"reliability diagram\" src=\"{reliability_plot(found)}\">",
            "<table id=\"calibration\"><thead><tr><th>analysis</th><th>ECE</th><th>ECE calibrated</th>"
            f"<th>calibration</th></tr></thead><tbody>{rows}</tbody></table>"]


def write_report(run_dir_paths, output, question: str | None = None, data_dir=None) -> Path:
    check_output_path(output)
    text = build_report(run_dir_paths, question, data_dir)
    write_text_atomic(output, text)
    return Path(output)
