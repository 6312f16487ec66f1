"""`factlab report RUN_DIR... -o report.html`: one self-contained HTML page about finished runs.

The page holds the results table with 95% Wilson intervals, the training curves of every `*.metrics.jsonl`, the
risk-coverage plot of every `*.analysis.json` (written by `factlab analyze`), attention maps of each model for one
question, and a filterable table of every prediction (with the recitation, for a model that answers by
recitation: the file PREDICTIONS.recitations that `factlab evaluate` writes beside its predictions). Plots are
matplotlib PNGs embedded as base64 and the filter is a few lines of inline JavaScript: the page loads nothing from
anywhere else.

A RUN_DIR must hold `results.json`:
    {"rows": [{"run", "variant", "correct", "total", "percent", "seconds", "params", "predictions"}, ...],
     "eval_corpus_path": ..., "corpus_path": ...}
`params` and `predictions` are file names in the RUN_DIR (or null). A relative corpus path is looked up in the
RUN_DIR first, then in the current directory. An analysis file X.analysis.json belongs to the run whose
predictions or checkpoint file is X (with or without its suffix), else to the only run with the same predictions;
its risk_coverage "coverage" and "accuracy" are fractions in [0, 1].
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure  # the Agg canvas, without pyplot's global state

from . import FactlabError, checkpoint
from .io import write_text_atomic
from .data import Question, parse_questions, read_text
from .decode import answer_prompt, answer_questions, recite_then_answer
from .experiment import ModelOptions, answer_format, check_output_path, load_model, prompt_for
from .model import GPT
from .vocab import Vocab

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
ROW_KEYS = ("run", "variant", "correct", "total", "percent", "seconds", "params", "predictions")


def wilson_interval(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion correct/total (Wilson 1927; Newcombe 1998, method 3):

        centre = (p + z²/2n) / (1 + z²/n),   half-width = z / (1 + z²/n) · sqrt(p(1 - p)/n + z²/4n²)

    Unlike p ± z·sqrt(p(1-p)/n), it stays inside [0, 1] and is not empty at 0 or n correct.
    """
    if total <= 0 or not 0 <= correct <= total:
        raise ValueError(f"need 0 <= correct <= total and total > 0, got {correct}/{total}")
    n, p = total, correct / total
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # The interval always contains p; the clamps undo rounding, which at 0 or n correct can leave p just outside
    # (a lower end of 1e-17 for 0 correct), and matplotlib's error bars refuse a negative length.
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


# ----------------------------------------------------------------------------------------------------- reading


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FactlabError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise FactlabError(f"{path}: not valid JSON (line {err.lineno} column {err.colno}: {err.msg})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise FactlabError(f"{path}: cannot read ({err})") from None


def read_jsonl(path: Path) -> list[dict]:
    records = []
    for number, line in enumerate(read_text_or_empty(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise FactlabError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise FactlabError(f"{path}:{number}: expected a JSON object")
        records.append(record)
    return records


def read_text_or_empty(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise FactlabError(f"{path}: cannot read ({err})") from None


def resolve(run_dir: Path, name: str) -> Path:
    """A path from results.json: absolute as is; relative, in the run dir first, then in the current directory."""
    path = Path(name)
    if path.is_absolute():
        return path
    return run_dir / path if (run_dir / path).exists() or not path.exists() else path


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


def load_run_dir(path) -> RunDir:
    path = Path(path)
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
    eval_path = resolve(path, results["eval_corpus_path"])
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
    run_dir = RunDir(path, questions, resolve(path, corpus) if corpus else None, runs, metrics)
    for analysis_path in sorted(path.glob("*.analysis.json")):
        analysis = read_analysis(analysis_path)
        run_dir.analyses.append((analysis_path, analysis))
        match = match_analysis(analysis_path, analysis, runs)
        if match is not None:
            match.analysis, match.analysis_path = analysis, analysis_path
    return run_dir


def read_predictions(path: Path, n_questions: int, eval_path: Path, what: str = "predictions") -> list[str]:
    text = read_text_or_empty(path)
    lines = text.split("\n")
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


# ----------------------------------------------------------------------------------------------------- plots


def png(fig: Figure, tight: bool = True) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, bbox_inches="tight" if tight else None)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def results_plot(runs: list[Run]) -> str:
    scored = [r for r in runs if r.row["total"]]
    fig = Figure(figsize=(7, 0.45 * len(scored) + 1.0), dpi=90)
    ax = fig.add_subplot()
    for y, run in enumerate(scored):
        lo, hi = wilson_interval(run.row["correct"], run.row["total"])
        p = run.row["correct"] / run.row["total"]
        ax.errorbar(100 * p, y, xerr=[[100 * (p - lo)], [100 * (hi - p)]], fmt="o", color="C0", capsize=4)
    ax.set_yticks(range(len(scored)), [r.label for r in scored])
    ax.invert_yaxis()
    ax.set_xlabel("dev exact match (%), with 95% Wilson interval")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    return png(fig)


def training_curves_plot(metrics: dict[str, list[dict]]) -> str:
    names = [n for n, steps in metrics.items() if any("loss" in s for s in steps)]
    fig = Figure(figsize=(4.2 * len(names), 3.2), dpi=90)
    for i, name in enumerate(names):
        steps = [s for s in metrics[name] if "loss" in s]
        ax = fig.add_subplot(1, len(names), i + 1)
        x = [s.get("step", j) for j, s in enumerate(steps)]
        ax.plot(x, [s["loss"] for s in steps], color="C0", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss", color="C0")
        ax.set_title(f"{name}\nfinal loss {steps[-1]['loss']:.3f}", fontsize=9)
        if all("lr" in s for s in steps):
            lr = ax.twinx()
            lr.plot(x, [s["lr"] for s in steps], color="C1", lw=1, ls="--")
            lr.set_ylabel("learning rate", color="C1")
    fig.tight_layout()
    return png(fig)


def risk_coverage_plot(curves: list[tuple[str, dict]]) -> str:
    fig = Figure(figsize=(6, 4), dpi=90)
    ax = fig.add_subplot()
    for label, rc in curves:
        ax.plot([100 * c for c in rc["coverage"]], [100 * a for a in rc["accuracy"]], label=label)
    ax.set_xlabel("coverage: % of questions answered, most confident first")
    ax.set_ylabel("accuracy on the answered questions (%)")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, max(5.0, 105 * max((a for _, rc in curves for a in rc["accuracy"]), default=0)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png(fig)


MODULE_ROLES = {"down_block.attn": "latents ← input", "up_block.attn": "input ← latents"}


def token_label(ch: str) -> str:
    return {" ": "␣", "\n": "↵", "\t": "⇥"}.get(ch, ch)


def attention_figure(maps: list[tuple[str, torch.Tensor]], chars: list[str], n_latents: int) -> str:
    """One row per attention module, one column per head; each panel is (queries x keys) for the one sequence.
    Panels are placed at fixed inch offsets: automatic layout of thousands of tick labels takes seconds."""
    latents = [f"L{i}" for i in range(n_latents)]
    n_head = maps[0][1].size(1)
    n = max(len(chars), n_latents)
    cell = min(5.0, max(2.2, 0.1 * n))  # a panel's side, in inches
    fontsize = min(6.0, 0.9 * 72 * cell / n)  # points: one tick label per row and column
    left, gap, row_gap, top = 0.4, 0.15, 0.7, 0.3  # room for tick labels and titles, in inches
    width, height = left + n_head * (cell + gap), top + len(maps) * (cell + row_gap)
    fig = Figure(figsize=(width, height), dpi=90)
    for row, (name, weights) in enumerate(maps):
        role = f" ({MODULE_ROLES[name]})" if name in MODULE_ROLES else ""
        for h in range(n_head):
            w = weights[0, h].cpu().numpy()
            bottom = height - top - (row + 1) * (cell + row_gap) + row_gap
            ax = fig.add_axes(((left + h * (cell + gap)) / width, bottom / height, cell / width, cell / height))
            ax.imshow(w, cmap="viridis", norm=PowerNorm(0.5, vmin=0.0, vmax=1.0), aspect="auto",
                      interpolation="nearest")
            if h == 0:  # the heads of a row share their queries and keys: one set of labels (they are slow to draw)
                rows = chars if w.shape[0] == len(chars) else latents
                cols = chars if w.shape[1] == len(chars) else latents
                ax.set_yticks(range(len(rows)), rows, fontsize=fontsize)
                ax.set_xticks(range(len(cols)), cols, fontsize=fontsize, rotation=90)
                ax.tick_params(length=0, pad=1)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
            ax.set_title(f"{name}{role} head {h}", fontsize=8)
    return png(fig, tight=False)


# ----------------------------------------------------------------------------------------------------- models


def load_checkpoint(run_dir: RunDir, run: Run) -> tuple[GPT, Vocab]:
    path = run_dir.path / run.row["params"]
    header = checkpoint.read_config(path)
    if header is not None:
        model, _ = checkpoint.load(path, header[0], header[1])
        vocab = header[1]
    else:  # a course .params file: the vocabulary comes from the pretraining corpus
        if run_dir.corpus_path is None:
            raise FactlabError(f"{path}: a course checkpoint needs \"corpus_path\" in results.json for its vocabulary")
        model, corpus = load_model(path, run.row["variant"], run_dir.corpus_path, ModelOptions())
        vocab = corpus.vocab
    return model.eval(), vocab


def attention_section(run_dir: RunDir, run: Run, question: str) -> str:
    model, vocab = load_checkpoint(run_dir, run)
    fmt = answer_format(run_dir.path / run.row["params"])
    recites = fmt == "recite"
    prompt = prompt_for(vocab, question, "--question", fmt, model.config.block_size)
    if recites:  # the input becomes NAME. + the recitation + ⁇, then the answer
        (recited,), (answer,) = recite_then_answer(model, vocab, [prompt])
        prompt = answer_prompt(vocab, prompt, recited)
    else:
        answer = answer_questions(model, vocab, [prompt])[0]
    ids = (prompt + vocab.encode(answer, "answer"))[: model.config.block_size]
    maps = model.attention_maps(torch.tensor([ids]))
    chars = [token_label(c) for c in vocab.decode(ids)]
    config = model.config
    kind = {"vanilla": "Self-attention, per layer and head",
            "rope": "Self-attention with rotary position embeddings (queries and keys rotated by position), per "
                    "layer and head",
            "synthesizer": "Synthesized weights softmax(ReLU(X A<sub>i</sub> + b<sub>1</sub>) B<sub>i</sub> + "
                           "b<sub>2</sub>), per layer and head",
            "perceiver": f"Cross-attention of the {config.bottleneck_dim} latents to the input (down_block), "
                         "self-attention among the latents (blocks), and of the input to the latents (up_block)"}
    return (f"<h3>{esc(run.label)} <small>({esc(run.row['params'])}, {config.variant}, {config.n_layer} layers, "
            f"{config.n_head} heads)</small></h3>\n"
            f"<p>{kind[config.variant]}. Greedy answer: <b>{esc(answer) or '(empty)'}</b>. The input is the "
            f"{'biography the model recited after NAME.' if recites else 'question'}, its ⁇ and the answer: "
            f"what the model read when it closed its answer. One panel per module "
            f"(row) and head (column); in each, rows are queries and columns keys (labelled in the row's first panel), "
            f"and colour is the weight (0 to 1, square-root scale).</p>\n"
            f"<div class=\"scroll\"><img class=\"full\" alt=\"attention maps of {esc(run.label)}\" "
            f"src=\"{attention_figure(maps, chars, config.bottleneck_dim)}\"></div>")


# ----------------------------------------------------------------------------------------------------- page


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


def build_report(run_dir_paths, question: str | None = None) -> str:
    """The HTML text of the report on the given run directories."""
    run_dirs = [load_run_dir(p) for p in run_dir_paths]
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
    curves = [(run.label, run.analysis["risk_coverage"]) for run in runs
              if run.analysis is not None and run.analysis.get("risk_coverage")]
    matched = {id(run.analysis) for run in runs if run.analysis is not None}
    curves += [(f"{d.path.name}: {p.name}", a["risk_coverage"]) for d in run_dirs for p, a in d.analyses
               if id(a) not in matched and a.get("risk_coverage")]
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

    parts.append(f"<h2>Attention maps</h2>\n<p>Question: <b>{esc(question)}</b></p>")
    with_model = [(d, run) for d in run_dirs for run in d.runs if run.row["params"]]
    for d, run in with_model:
        parts.append(attention_section(d, run, question))
    if not with_model:
        parts.append("<p class=\"note\">No run with a checkpoint.</p>")

    parts.append("<h2>Predictions</h2>")
    parts.append(predictions_table(run_dirs))

    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>factlab report</title>\n"
            f"<style>{CSS}</style></head>\n<body>\n{body}\n<script>{FILTER_JS}</script>\n</body></html>\n")


def write_report(run_dir_paths, output, question: str | None = None) -> Path:
    check_output_path(output)
    text = build_report(run_dir_paths, question)
    write_text_atomic(output, text)
    return Path(output)
