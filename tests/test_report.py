"""`factlab report`: Wilson intervals, the attention weights behind the maps, the page built from a quick demo run
directory, its one-line errors, and the page rendered by headless Chromium without console errors."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import pytest
import torch
from hypothesis import given, settings, strategies as st

from factlab import checkpoint, experiment
from factlab.analysis import calibration_summary
from factlab.cli import main
from factlab.data import parse_questions
from factlab.demo import run_demo
from factlab.model import GPT, GPTConfig, merge_heads, split_heads
from factlab.report import build_report
from factlab.report.runs import Run, match_analysis
from factlab.statistics import wilson_interval

# ------------------------------------------------------------------------------------------------ Wilson interval


@pytest.mark.parametrize("correct, total, low, high", [
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I, method 3 (Wilson)
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    # the README's demo rows: 3–14%, 7–21%, 14–31%
    (6, 90, 0.0309, 0.1379),
    (11, 90, 0.0696, 0.2057),
    (19, 90, 0.1395, 0.3063),
    (5, 10, 0.2366, 0.7634),
])
def test_wilson_interval_known_values(correct, total, low, high):
    lo, hi = wilson_interval(correct, total)
    assert (round(lo, 4), round(hi, 4)) == (low, high)


def test_wilson_interval_is_symmetric_and_checks_its_input():
    lo, hi = wilson_interval(20, 20)
    assert hi == 1.0 and lo == pytest.approx(1 - wilson_interval(0, 20)[1])
    for bad in ((1, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            wilson_interval(*bad)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_contains_the_proportion(pair):
    """0 <= lo <= p <= hi <= 1, with lo = 0 exactly at 0 correct and hi = 1 at all correct (the results plot draws
    p - lo and hi - p as error bars, which must not be negative)."""
    correct, total = pair
    lo, hi = wilson_interval(correct, total)
    assert 0.0 <= lo <= correct / total <= hi <= 1.0
    assert (lo == 0.0) == (correct == 0) and (hi == 1.0) == (correct == total)


# ------------------------------------------------------------------------------------------------ attention weights

V = 30
CONFIGS = {
    "vanilla": GPTConfig(V, 24, n_layer=2, n_head=2, n_embd=16, dropout=0.0),
    "synthesizer": GPTConfig(V, 24, n_layer=2, n_head=2, n_embd=16, variant="synthesizer", dropout=0.0),
    "rope": GPTConfig(V, 24, n_layer=2, n_head=2, n_embd=16, variant="rope", dropout=0.0),
    "perceiver": GPTConfig(V, 24, n_layer=3, n_head=2, n_embd=16, variant="perceiver", bottleneck_dim=8,
                           dropout=0.0),
    "perceiver-more-latents": GPTConfig(V, 24, n_layer=2, n_head=1, n_embd=16, variant="perceiver",
                                        bottleneck_dim=30, dropout=0.1),
}
EXPECTED_MODULES = {
    "vanilla": ["blocks.0.attn", "blocks.1.attn"],
    "synthesizer": ["blocks.0.attn", "blocks.1.attn"],
    "rope": ["blocks.0.attn", "blocks.1.attn"],
    "perceiver": ["down_block.attn", "blocks.0.attn", "up_block.attn"],
    "perceiver-more-latents": ["down_block.attn", "up_block.attn"],
}


def random_model(config: GPTConfig) -> GPT:
    """Weights far from the 0.02 initialisation, so that the attention is far from uniform."""
    torch.manual_seed(0)
    model = GPT(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" not in name:
                p.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("T", [1, 13, 24])
def test_attention_maps_are_the_weights_sdpa_applies(name, T):
    """For every attention module: rows sum to 1, query i gives weight 0 to keys > i (upper-left causal), and
    proj(weights @ v) is exactly what the module's SDPA forward returned."""
    config = CONFIGS[name]
    model = random_model(config).train()  # attention_maps switches to eval itself (no dropout) and back
    x = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(T))
    calls = []
    hooks = [m.register_forward_hook(lambda mod, args, out: calls.append((mod, args, out)))
             for m in model.modules() if hasattr(m, "attention_weights")]
    maps = model.attention_maps(x)
    for h in hooks:
        h.remove()
    assert model.training
    assert [n for n, _ in maps] == EXPECTED_MODULES[name]
    assert len(calls) == len(maps)
    m = config.bottleneck_dim
    for (module_name, weights), (module, args, output) in zip(maps, calls):
        x_in, context = args[0], args[1]
        n_q, n_k = x_in.size(1), (x_in if context is None else context).size(1)
        expected_shape = {"down_block.attn": (m, T), "up_block.attn": (T, m)}.get(module_name)
        if config.variant == "perceiver" and module_name.startswith("blocks."):
            expected_shape = (m, m)
        assert weights.shape == (2, config.n_head, n_q, n_k) and (n_q, n_k) == (expected_shape or (T, T))
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, config.n_head, n_q))
        future = ~torch.ones(n_q, n_k, dtype=torch.bool).tril()
        assert bool((weights[..., future] == 0).all())
        assert bool((weights >= 0).all())
        v = split_heads(module.value(x_in if context is None else context), config.n_head)
        torch.testing.assert_close(module.proj(merge_heads(weights @ v)), output, rtol=1e-5, atol=1e-5)
    if T > 1 and name == "vanilla":  # the maps are not trivially uniform
        assert not torch.allclose(maps[0][1][0, 0, -1, :], torch.full((T,), 1.0 / T), atol=1e-2)


# ------------------------------------------------------------------------------------------------ the report


def write_analysis(path, questions, predictions, confidences):
    records = [{"question": q.question, "name": q.question[10:-6], "gold": q.answer, "prediction": p,
                "correct": p == q.answer, "confidence": c, "first_char_prob": c, "name_in_corpus": True,
                "gold_in_doc": True, "prediction_in_doc": False, "nearest_train_name": "X", "nearest_train_answer": "Y"}
               for q, p, c in zip(questions, predictions, confidences)]
    order = sorted(range(len(records)), key=lambda i: -confidences[i])
    coverage, accuracy, right = [], [], 0
    for k, i in enumerate(order, start=1):
        right += records[i]["correct"]
        coverage.append(k / len(records))
        accuracy.append(right / k)
    summary = {"n": len(records), "calibration": calibration_summary(records, None)}
    rc = {"coverage": coverage, "accuracy": accuracy, "aurc": 0.5, "accuracy_at_50": 0.25, "accuracy_full": 0.0}
    path.write_text(json.dumps({"records": records, "summary": summary, "risk_coverage": rc}))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """`factlab demo --quick` (about 10 s on 2 cores), plus a random synthesizer, perceiver and rope model with predictions,
    and two analysis files: one named after a checkpoint, one that matches no run."""
    out = tmp_path_factory.mktemp("report") / "demo"
    run_demo(out, quick=True, device="cpu", log=lambda *_: None)
    results = json.loads((out / "results.json").read_text())
    data = out / "data"
    config, vocab, _ = checkpoint.read_config(out / "vanilla.finetune.params")
    for variant in ("synthesizer", "perceiver", "rope"):
        torch.manual_seed(0)
        model = GPT(GPTConfig(len(vocab), config.block_size, n_layer=3, n_head=2, n_embd=32, variant=variant,
                              bottleneck_dim=8, dropout=0.0))
        checkpoint.save(out / f"{variant}.params", model, vocab, {"stage": "test"})
        evaluation = experiment.evaluate(variant, data / "wiki.txt", out / f"{variant}.params", data / "birth_dev.tsv",
                                         experiment.ModelOptions(), out / f"{variant}.dev.predictions", device="cpu")
        s = evaluation.score
        results["rows"].append({"run": f"{variant} (random weights)", "variant": variant, "correct": s.correct,
                                "total": s.total, "percent": s.percent, "seconds": 0.0,
                                "params": f"{variant}.params", "predictions": f"{variant}.dev.predictions"})
    (out / "results.json").write_text(json.dumps(results))
    questions = parse_questions((data / "birth_dev.tsv").read_text(), "dev")
    predictions = (out / "vanilla.pretrain.dev.predictions").read_text().splitlines()
    write_analysis(out / "vanilla.finetune.analysis.json", questions, predictions,
                   [1.0 / (i + 2) for i in range(len(questions))])
    write_analysis(out / "orphan.analysis.json", questions, ["Nowhere"] * len(questions), [0.5] * len(questions))
    return out


def image_sources(page: str) -> list[str]:
    return re.findall(r"<img [^>]*src=\"([^\"]*)\"", page)


@pytest.fixture(scope="module")
def page(run_dir):
    return build_report([run_dir])


def test_report_page(run_dir, page):
    results = json.loads((run_dir / "results.json").read_text())
    n_questions = len((run_dir / "data" / "birth_dev.tsv").read_text().splitlines())
    # results table: one row per run, with its Wilson interval
    table = page.split("<table id=\"results\">")[1].split("</table>")[0]
    assert table.count("<tr>") == 1 + len(results["rows"])
    for row in results["rows"]:
        lo, hi = wilson_interval(row["correct"], row["total"])
        assert f"{row['correct']}/{row['total']} = " in table and f"{100 * lo:.1f}–{100 * hi:.1f}%" in table
    # self-contained: every image is an embedded PNG, nothing is fetched from elsewhere
    sources = image_sources(page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n" for s in sources)
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "<link" not in page
    # images: results, training curves, risk-coverage, reliability, and one attention figure per checkpoint (5)
    assert len(sources) == 4 + 5
    assert "training curves of demo" in page and "alt=\"risk-coverage\"" in page
    rc_table = page.split("<table id=\"risk-coverage\">")[1].split("</table>")[0]
    assert "demo: vanilla: pretrain + finetune" in rc_table and "demo: orphan.analysis.json" in rc_table
    calibration = page.split("<table id=\"calibration\">")[1].split("</table>")[0]
    assert "alt=\"reliability diagram\"" in page and calibration.count("<tr><td>") == 2  # both analyses
    # attention: the default question is the first dev question; each variant's own modules are drawn
    first = (run_dir / "data" / "birth_dev.tsv").read_text().split("\t")[0]
    assert f"Question: <b>{first}</b>" in page
    assert "Synthesized weights" in page and "Cross-attention of the 8 latents" in page
    assert "rotary position embeddings" in page
    # predictions: one row per run and question, with the analysis's confidence where it has one
    body = page.split("<table id=\"predictions\">")[1].split("</table>")[0]
    assert body.count("<tr class=") == len(results["rows"]) * n_questions
    assert "<th>confidence</th>" in body and f"<td class=\"num\">{1 / 2:.3f}</td>" in body


def test_cli_report_without_analysis(run_dir, tmp_path, capsys):
    """Without *.analysis.json the page says so and has no confidence column; --question picks the question."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("*.analysis.json"))
    out = tmp_path / "site" / "report.html"
    assert main(["report", str(copy), "-o", str(out), "--question", "Where was Nobody Atall born?"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "No analysis file (<code>*.analysis.json</code>" in page and "<th>confidence</th>" not in page
    assert "Question: <b>Where was Nobody Atall born?</b>" in page



def test_report_on_committed_results_reads_the_data_folder(run_dir, tmp_path, capsys):
    """A results folder as committed (results.json and predictions, no checkpoints), whose results.json names the
    data files by their names in the data folder: --data_dir finds them, and the page says there is no model."""
    committed, data = tmp_path / "results" / "run", tmp_path / "elsewhere"
    shutil.copytree(run_dir / "data", data)
    committed.mkdir(parents=True)
    for path in run_dir.iterdir():
        if path.suffix in (".predictions", ".json") or path.name.endswith(".metrics.jsonl"):
            shutil.copy(path, committed)
    results = json.loads((committed / "results.json").read_text())
    results.update(corpus_path="wiki.txt", eval_corpus_path="birth_dev.tsv")
    (committed / "results.json").write_text(json.dumps(results))
    out = tmp_path / "report.html"
    assert main(["report", str(committed), "-o", str(out)]) == 2  # the dev questions are not beside the results
    assert "birth_dev.tsv" in capsys.readouterr().err
    assert main(["report", str(committed), "-o", str(out), "--data_dir", str(data)]) == 0
    page = out.read_text()
    assert "No checkpoint in these run directories" in page and "<h2>Predictions</h2>" in page
    assert page.count("<tr") > len(parse_questions((data / "birth_dev.tsv").read_text(), "dev"))

def test_analysis_belongs_to_a_run_by_name_else_by_its_predictions(tmp_path):
    runs = [Run(tmp_path, {"run": "a", "params": "a.params", "predictions": "a.dev.predictions"}, ["x", "y"]),
            Run(tmp_path, {"run": "b", "params": None, "predictions": "b.dev.predictions"}, ["x", "z"])]
    analysis = {"records": [{"prediction": "x"}, {"prediction": "z"}]}
    for name, expected in (("a.analysis.json", "a"), ("a.params.analysis.json", "a"), ("a.dev.analysis.json", "a"),
                           ("b.dev.predictions.analysis.json", "b"), ("other.analysis.json", "b")):
        assert match_analysis(tmp_path / name, analysis, runs).row["run"] == expected, name
    runs[0].predictions = ["x", "z"]  # two runs with the analysis's predictions: no guess
    assert match_analysis(tmp_path / "other.analysis.json", analysis, runs) is None


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("factlab: error: ")
    return err


def test_report_errors(run_dir, tmp_path, capsys):
    out = str(tmp_path / "r.html")
    assert "no results.json" in one_line_error(capsys, ["report", str(tmp_path), "-o", out])
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "results.json").write_text('{"rows": [\n  {"run": "x",}\n]}')
    err = one_line_error(capsys, ["report", str(broken), "-o", out])
    assert f"{broken / 'results.json'}: not valid JSON (line 2" in err
    results = json.loads((run_dir / "results.json").read_text())
    results["rows"][0]["correct"] = results["rows"][0]["total"] + 1
    (broken / "results.json").write_text(json.dumps(results))
    assert "results.json: row 0: correct and total" in one_line_error(capsys, ["report", str(broken), "-o", out])
    shutil.copy(run_dir / "results.json", broken / "results.json")
    with open(broken / "vanilla.pretrain.params.metrics.jsonl", "a") as f:
        f.write("{not json\n")
    assert "vanilla.pretrain.params.metrics.jsonl:" in one_line_error(capsys, ["report", str(broken), "-o", out])
    shutil.copy(run_dir / "vanilla.pretrain.params.metrics.jsonl", broken)
    err = one_line_error(capsys, ["report", str(broken), "-o", out, "--question", "Where was Zoë born?"])
    assert "--question: character 'ë'" in err
    (broken / "london.dev.predictions").write_text("London\n")
    assert "london.dev.predictions: 1 predictions for the" in one_line_error(capsys, ["report", str(broken), "-o", out])
    assert not (tmp_path / "r.html").exists()


# ------------------------------------------------------------------------------------------------ Chromium

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Injected first in <head>: records uncaught errors, rejected promises and console.error/warn calls.
CATCH = """<script>window.__problems = [];
window.addEventListener("error", function (e) { window.__problems.push("error: " + e.message); });
window.addEventListener("unhandledrejection", function (e) { window.__problems.push("rejection: " + e.reason); });
["error", "warn"].forEach(function (level) { var original = console[level];
  console[level] = function () { window.__problems.push(level + ": " + Array.prototype.join.call(arguments, " "));
                                 original.apply(console, arguments); }; });</script>"""

# Injected last in <body>: after load, checks images and tables, drives the filter, writes the findings as JSON.
CHECK = """<script>window.addEventListener("load", function () {
  function visible() { return Array.prototype.filter.call(document.querySelectorAll("#predictions tbody tr"),
                                                          function (r) { return !r.hidden; }).length; }
  var box = document.getElementById("filter"), wrong = document.getElementById("wrong-only");
  var status = {problems: window.__problems, total: visible()};
  status.images = Array.prototype.map.call(document.images, function (img) {
    return {complete: img.complete, width: img.naturalWidth, height: img.naturalHeight}; });
  status.tables = Array.prototype.map.call(document.querySelectorAll("table"), function (t) {
    return {id: t.id, rows: t.querySelectorAll("tbody tr").length, height: t.getBoundingClientRect().height}; });
  box.value = FILTER_TEXT; box.dispatchEvent(new Event("input"));
  status.filtered = visible(); status.shown_text = document.getElementById("shown").textContent;
  box.value = ""; box.dispatchEvent(new Event("input"));
  wrong.checked = true; wrong.dispatchEvent(new Event("change"));
  status.wrong = visible();
  var pre = document.createElement("pre"); pre.id = "chromium-check"; pre.textContent = JSON.stringify(status);
  document.body.appendChild(pre);
});</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)")
def test_report_renders_in_headless_chromium(run_dir, page, tmp_path):
    name = (run_dir / "data" / "birth_dev.tsv").read_text().split("\t")[0].removeprefix("Where was ")
    name = name.removesuffix(" born?")
    instrumented = page.replace("<head>", "<head>" + CATCH, 1).replace(
        "</body>", CHECK.replace("FILTER_TEXT", json.dumps(name)) + "</body>", 1)
    html_path = tmp_path / "report.html"
    html_path.write_text(instrumented, encoding="utf-8")
    done = subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--dump-dom",
         html_path.as_uri()],
        capture_output=True, text=True, timeout=180)
    found = re.search(r"<pre id=\"chromium-check\">(.*?)</pre>", done.stdout, re.S)
    assert found, f"no check result in the dumped DOM (rc {done.returncode}); stderr tail:\n{done.stderr[-2000:]}"
    status = json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    # console messages that Chromium logged (the page itself logs nothing)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert status["problems"] == [], status["problems"]
    assert console == [], "\n".join(console)
    assert len(status["images"]) == len(image_sources(page)) == 9  # 4 + one attention figure per checkpoint (5)
    assert all(img["complete"] and img["width"] > 0 and img["height"] > 0 for img in status["images"])
    tables = {t["id"]: t for t in status["tables"]}
    results = json.loads((run_dir / "results.json").read_text())
    n_questions = len((run_dir / "data" / "birth_dev.tsv").read_text().splitlines())
    assert tables["results"]["rows"] == len(results["rows"]) and tables["results"]["height"] > 0
    assert tables["risk-coverage"]["rows"] == 2
    assert tables["predictions"]["rows"] == status["total"] == len(results["rows"]) * n_questions
    # the filter: a dev name leaves that question's row of every run; "wrong only" leaves the wrong answers
    assert status["filtered"] == len(results["rows"])
    assert status["shown_text"] == f"{len(results['rows'])} of {status['total']} rows shown"
    wrong = sum(r["total"] - r["correct"] for r in results["rows"])
    assert status["wrong"] == wrong


def test_export_keeps_the_small_outputs_and_the_report_reads_them(run_dir, tmp_path, capsys, monkeypatch):
    """factlab export: results, predictions and analyses copied, curves thinned, no checkpoint or data file; the
    exported folder makes the same results table."""
    import factlab.export

    monkeypatch.setattr(factlab.export, "METRICS_ROWS", 5)
    out = tmp_path / "results" / "demo"
    assert main(["export", str(run_dir), str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert not [n for n in names if n.endswith((".params", ".state", ".tsv", ".txt"))]
    assert {p.name for p in run_dir.glob("*.predictions")} <= names and "vanilla.finetune.analysis.json" in names
    exported = json.loads((out / "vanilla.finetune.analysis.json").read_text())
    assert exported["records"] and not any({"question", "gold", "name"} & set(r) for r in exported["records"])
    assert [r["prediction"] for r in exported["records"]] == \
        [r["prediction"] for r in json.loads((run_dir / "vanilla.finetune.analysis.json").read_text())["records"]]
    saved = json.loads((out / "results.json").read_text())
    # results.md is made again from results.json's rows: the rows this fixture added to results.json are in it
    table = (out / "results.md").read_text()
    assert table.startswith("| run | dev exact match (95% interval) |")
    assert [line.split(" | ")[0][2:] for line in table.splitlines()[2:]] == [r["run"] for r in saved["rows"]]
    for name, kept in saved["exported"]["metrics"].items():
        rows = [json.loads(line) for line in (out / name).read_text().splitlines()]
        full = [json.loads(line) for line in (run_dir / name).read_text().splitlines()]
        assert len(rows) == kept["rows"] == min(5, len(full)) and kept["of"] == len(full)
        assert rows[0] == full[0] and rows[-1] == full[-1]
    saved["corpus_path"], saved["eval_corpus_path"] = "wiki.txt", "birth_dev.tsv"
    (out / "results.json").write_text(json.dumps(saved))
    page = build_report([out], data_dir=run_dir / "data")
    table = page.split("<table id=\"results\">")[1].split("</table>")[0]
    assert all(row["run"] in table for row in saved["rows"])
    assert main(["export", str(tmp_path / "nowhere"), str(out)]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_export_cuts_an_analysis_paths_to_file_names(tmp_path):
    """Where a run lived on its machine (its checkpoint, the data files) is not kept: only the files' names."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"rows": []}))
    meta = {"variant": "vanilla", "checkpoint": str(run / "vanilla.finetune.params"), "corpus_path": "/data/wiki.txt",
            "train_corpus_path": None, "recall_checkpoint": "vanilla.pretrain.params", "block_size": 128}
    summary = {"calibration": {"platt": {"a": 0.3, "fitted_on": str(run / "vanilla.calibration.analysis.json")}}}
    records = [{"prediction": "/Paris", "correct": False}]
    (run / "vanilla.pretrain.dev.analysis.json").write_text(json.dumps({"meta": meta, "records": records,
                                                                        "summary": summary}))
    assert main(["export", str(run), str(tmp_path / "out")]) == 0
    exported = json.loads((tmp_path / "out" / "vanilla.pretrain.dev.analysis.json").read_text())
    assert exported["meta"] == {**meta, "checkpoint": "vanilla.finetune.params", "corpus_path": "wiki.txt"}
    assert exported["summary"]["calibration"]["platt"] == {"a": 0.3, "fitted_on": "vanilla.calibration.analysis.json"}
    assert exported["records"] == records  # an answer is the model's word, kept as it is
