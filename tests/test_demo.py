"""`factlab demo --quick`: the whole pipeline (corpus, baseline, two trainings, evaluations, table) runs and
writes what it reports."""

from __future__ import annotations

import re

from factlab.cli import main


def test_quick_demo_runs_end_to_end(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    assert main(["demo", "--quick", "--out_dir", str(out_dir), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    for name in ("wiki.txt", "birth_places_train.tsv", "birth_dev.tsv"):
        assert (out_dir / "data" / name).is_file()
    for name in ("vanilla.nopretrain.params", "vanilla.pretrain.params", "vanilla.finetune.params"):
        assert (out_dir / name).is_file() and (out_dir / f"{name}.metrics.jsonl").is_file()
    n_dev = len((out_dir / "data" / "birth_dev.tsv").read_text().splitlines())
    for name in ("london", "vanilla.nopretrain", "vanilla.pretrain"):
        assert len((out_dir / f"{name}.dev.predictions").read_text().splitlines()) == n_dev
    table = (out_dir / "results.md").read_text()
    rows = re.findall(r"^\| (London baseline|vanilla: no pretraining|vanilla: pretrain \+ finetune) \| (\d+)/(\d+) = ", table, re.M)
    assert [r[0] for r in rows] == ["London baseline", "vanilla: no pretraining", "vanilla: pretrain + finetune"]
    assert all(int(total) == n_dev for _, _, total in rows)
    assert table.strip() in printed
