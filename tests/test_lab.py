"""factlab.lab: the attention experiments show what the course's questions claim, the shipped K, Q, V construction
passes and wrong ones fail, the cost formulas equal the real model (parameters, torch's FLOP count, the bytes
autograd saves), and every `factlab lab` command writes its JSON and PNG or stops with one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from factlab.cli import main
from factlab.lab import attention, cost, kqv
from factlab.lab.measure import batch_of, config, counted_flops, saved_bytes
from factlab.lab.cost import VARIANTS
from factlab.model import GPT, SYNTHESIZER_B

PNG = b"\x89PNG\r\n\x1a\n"


def decreasing(xs) -> bool:
    return all(b < a for a, b in zip(xs, xs[1:]))


# --- the four read-out experiments ---------------------------------------------------------------------------

def test_copy_error_falls_with_scale_when_q_is_aligned_and_not_when_orthogonal():
    r = attention.copy(scales=[0, 1, 2, 4, 8, 16, 32], alignments=[1.0, 0.9, 0.5, 0.0])
    for a, err in zip(r["alignments"][:3], r["error"]):
        assert decreasing(err), a
        assert err[-1] < 1e-3 and r["weight_on_target"][r["alignments"].index(a)][-1] > 0.999
    aligned, half, orthogonal = r["error"][0], r["error"][2], r["error"][3]
    assert all(x <= y for x, y in zip(aligned[1:], half[1:]))  # better aligned copies sooner
    assert min(orthogonal) > 0.5  # q ⟂ k_j never copies v_j


def test_average_converges_to_the_mean_of_the_two_values_with_the_predicted_weights():
    r = attention.average(n_keys=6, dim=16, scales=[0, 1, 2, 4, 8, 16, 32])
    assert decreasing(r["error"]) and r["error"][-1] < 1e-10
    assert np.allclose(r["weight_a"], r["predicted_weight"]) and np.allclose(r["weight_a"], r["weight_b"])
    assert r["weight_a"][0] == pytest.approx(1 / 6)


def test_noisy_single_head_averages_isotropic_keys_but_swings_with_a_stretched_key():
    r = attention.noisy(samples=1000)["cases"]
    iso, stretched = r["isotropic"], r["stretched"]
    assert iso["std"] < 0.1 and iso["near_half"] > 0.9 and abs(iso["mean"] - 0.5) < 0.02
    assert stretched["std"] > 0.35 and stretched["near_half"] < 0.15
    ends = stretched["histogram"][0] + stretched["histogram"][-1]
    assert ends > 0.5 * sum(stretched["histogram"])  # mostly all on v_a or all on v_b


def test_two_heads_keep_c_near_the_average_under_the_same_perturbation():
    r = attention.two_heads(samples=1000, scale=20.0, alpha=1e-5)
    one, two = r["cases"]["one head"], r["cases"]["two heads"]
    assert two["std"] < one["std"] / 2
    assert two["median"] == pytest.approx(0.5, abs=0.01) and two["near_half"] > 0.8
    assert two["distance_mean"] < one["distance_mean"] / 3
    # what is left of the spread comes from draws where k_a·μ_a is small: head 1 then has no clear winner.
    # Those with k_a·μ_a < 0 stay off at any scale; a larger scale rescues the rest.
    assert r["away_share"] == pytest.approx(0.079, abs=0.03)  # P(g < −√2) for g ~ N(0, 1)
    assert r["away_share"] <= 1 - two["near_half"] < r["away_share"] + 0.1
    weaker = attention.two_heads(samples=1000, scale=5.0, alpha=1e-5)["cases"]["two heads"]
    assert weaker["near_half"] < two["near_half"]


def test_experiments_are_repeatable_and_validate_their_parameters():
    assert attention.noisy(samples=50, seed=3) == attention.noisy(samples=50, seed=3)
    with pytest.raises(Exception, match="--dim >= 8"):
        attention.average(n_keys=8, dim=4)
    with pytest.raises(Exception, match=r"\[-1, 1\]"):
        attention.copy(alignments=[1.5])


# --- key-query-value self-attention ----------------------------------------------------------------------------

@pytest.mark.parametrize("beta,dim", [(3.0, 4), (5.0, 7), (2.5, 4)])
def test_shipped_construction_passes(beta, dim):
    r = kqv.check(*kqv.constructions(dim)["solution"], beta=beta)
    assert r["passed"]
    assert [o["nearest"] for o in r["outputs"][:2]] == ["u_b - u_c", "u_b"]


def test_identity_and_random_constructions_fail():
    r = kqv.check(*kqv.constructions(4)["identity"], beta=3.0)
    assert not r["passed"]
    assert [o["nearest"] for o in r["outputs"]] == ["u_b + u_d (x1)", "u_a", "u_b + u_c (x3)"]  # c_i ≈ x_i
    K, Q, V = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert not kqv.check(K, Q, V, beta=3.0)["passed"]
    # the right construction with a small β: the softmax is too soft, c2 is not close enough to u_b
    assert not kqv.check(*kqv.constructions(4)["solution"], beta=1.0)["passed"]


# --- the cost model against the real model ---------------------------------------------------------------------

SIZES = st.builds(cost.Sizes, length=st.integers(1, 40), n_layer=st.integers(2, 5),
                  n_head=st.sampled_from([1, 2, 4]), n_embd=st.sampled_from([8, 16, 32]),
                  bottleneck_dim=st.integers(1, 12), vocab_size=st.integers(3, 50),
                  block_size=st.one_of(st.none(), st.integers(40, 64)),
                  synthesizer_b=st.sampled_from(SYNTHESIZER_B))


@settings(max_examples=15, deadline=None)
@given(sizes=SIZES, variant=st.sampled_from(VARIANTS))
def test_params_and_flops_equal_the_real_model(sizes, variant):
    with torch.device("meta"):
        model = GPT(config(variant, sizes))
    assert cost.model_costs(variant, sizes)["params"] == model.num_parameters()
    assert cost.model_costs(variant, sizes)["flops"] == counted_flops(variant, sizes)


def test_course_model_parameter_count():
    assert cost.model_costs("vanilla", cost.Sizes(128))["params"] == 3_323_392  # the course's number


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("sizes,batch", [(cost.Sizes(24, 3, 2, 16, 5, 30), 1), (cost.Sizes(9, 2, 4, 16, 12, 20, 16), 3),
                                         (cost.Sizes(9, 2, 4, 16, 12, 20, 16, "per-head"), 2)])
def test_activation_bytes_equal_what_autograd_saves(variant, sizes, batch):
    torch.manual_seed(0)
    model = GPT(config(variant, sizes))
    measured, _ = saved_bytes(model, *batch_of(sizes, batch))
    assert cost.model_costs(variant, sizes, batch)["activation_bytes"] == measured


def test_flop_formulas_scale_as_expected():
    s = cost.Sizes(512, n_layer=6, n_head=8, n_embd=128, bottleneck_dim=16, vocab_size=100)
    l, d, L, V = 512, 128, 6, 100
    assert cost.model_costs("vanilla", s)["flops"] == L * (24 * l * d * d + 4 * l * l * d) + 2 * l * d * V
    double = cost.Sizes(1024, 6, 8, 128, 16, 100)
    v1, v2 = (cost.model_costs("vanilla", x)["score_flops"] for x in (s, double))
    p1, p2 = (cost.model_costs("perceiver", x)["score_flops"] for x in (s, double))
    assert v2 == 4 * v1 and p2 < 2 * p1  # vanilla's scores grow as ℓ², the perceiver's at most as ℓ
    assert cost.score_ratio(s) == pytest.approx(p1 / v1)  # the formula is the score-FLOP ratio
    assert cost.model_costs("synthesizer", s)["flops"] < cost.model_costs("vanilla", s)["flops"]  # no key proj


# --- the command line ------------------------------------------------------------------------------------------

def run(capsys, *args):
    capsys.readouterr()
    code = main(["lab", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def outputs(out_dir, name):
    data = json.loads((out_dir / f"{name}.json").read_text())
    assert (out_dir / f"{name}.png").read_bytes().startswith(PNG)
    assert not list(out_dir.glob(".*.tmp"))  # atomic writes leave no temporary files
    return data


@pytest.mark.parametrize("name,options", [
    ("copy", ["--scales", "0,4,16", "--alignments", "1,0"]),
    ("average", ["--scales", "0,8", "--n_keys", "4", "--dim", "8"]),
    ("noisy", ["--samples", "200"]),
    ("two-heads", ["--samples", "200", "--scale", "15"]),
    ("kqv", ["--beta", "4"]),
])
def test_cli_experiments_write_json_and_png(tmp_path, capsys, name, options):
    code, out, err = run(capsys, name, "--out_dir", tmp_path, *options)
    assert code == 0, err
    data = outputs(tmp_path, name)
    assert data["experiment"] == name and f"wrote {tmp_path / name}.json" in out


def test_cli_cost_on_the_synthetic_corpus(tmp_path, capsys, corpus_files):
    code, out, err = run(capsys, "cost", "--out_dir", tmp_path, "--lengths", "16,32", "--n_layer", "3",
                         "--n_head", "2", "--n_embd", "16", "--bottleneck_dim", "4", "--batch_size", "2",
                         "--repeats", "2", "--corpus", corpus_files["wiki"])
    assert code == 0, err
    data = outputs(tmp_path, "cost")
    vocab = data["sizes"]["vocab_size"]
    assert vocab == len(set(corpus_files["wiki"].read_text())) + 2  # + PAD and MASK
    for a, m in zip(data["analytic"], data["measured"]):
        for v in VARIANTS:
            assert a[v]["flops"] == a[v]["flops_counted"] and a[v]["activation_bytes"] == m[v]["activation_bytes"]
            assert len(m[v]["cpu_s"]) == 2 and m[v]["cpu_median_s"] > 0
    assert [r["length"] for r in data["ratios"]] == [16, 32] and "p/v measured" in out and " NO" not in out


def test_cli_kqv_file_pass_and_fail(tmp_path, capsys):
    K, Q, V = kqv.constructions(5)["solution"]
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"K": K.tolist(), "Q": Q.tolist(), "V": V.tolist()}))
    assert run(capsys, "kqv", "--kqv_file", good, "--out_dir", tmp_path)[0] == 0
    bad = tmp_path / "identity.npy"
    np.save(bad, np.stack([np.eye(4)] * 3))
    code, out, err = run(capsys, "kqv", "--kqv_file", bad, "--out_dir", tmp_path)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("factlab: error: K, Q, V of identity.npy miss the targets: c1 ≈ u_b + u_d")
    code, out, err = run(capsys, "kqv", "--beta", "1.5", "--out_dir", tmp_path)  # right shape, too soft
    assert code == 2 and "c1 is 13.8% from u_b - u_c (tolerance 5.0%)" in err
    assert outputs(tmp_path, "kqv")["passed"] is False  # the outputs are still written, to look at


@pytest.mark.parametrize("filename,content,message", [
    ("k.json", "{not json", "cannot read K, Q, V"),
    ("k.json", '{"K": [[1]], "Q": [[1]]}', 'matrices "K", "Q" and "V"'),
    ("k.json", json.dumps({"K": np.eye(4).tolist(), "Q": np.eye(5).tolist(), "V": np.eye(4).tolist()}),
     "Q has shape (5, 5)"),
    ("k.json", json.dumps({"K": [[1, 2], [3]], "Q": [], "V": []}), "cannot read K, Q, V"),
    ("k.json", json.dumps({m: np.eye(3).tolist() for m in "KQV"}), "d >= 4"),
    ("k.npy", np.eye(4), "expected an array of shape (3, d, d)"),
    ("k.npy", b"garbage", "cannot read K, Q, V"),
    ("k.txt", "1 0", "expected a .json or .npy file"),
    ("missing.json", None, "no such file"),
])
def test_cli_bad_kqv_files_give_one_line_naming_the_file(tmp_path, capsys, filename, content, message):
    path = tmp_path / filename
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    code, out, err = run(capsys, "kqv", "--kqv_file", path, "--out_dir", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and str(path) in err and message in err, err
    assert not (tmp_path / "out").exists()


def test_cli_bad_parameters_give_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "average", "--n_keys", "9", "--dim", "4", "--out_dir", tmp_path)
    assert code == 2 and err == "factlab: error: 9 orthonormal keys need --dim >= 9 (got 4)\n"
    code, _, err = run(capsys, "cost", "--n_embd", "10", "--n_head", "4", "--no_measure", "--out_dir", tmp_path)
    assert code == 2 and err.startswith("factlab: error: --n_embd must be divisible") and err.count("\n") == 1
    (tmp_path / "taken").write_text("a file where the output folder should go")
    code, _, err = run(capsys, "average", "--out_dir", tmp_path / "taken")
    assert code == 2 and err.startswith("factlab: error: ") and "cannot create its folder" in err, err
    assert str(tmp_path / "taken") in err and err.count("\n") == 1


def test_rope_checks_the_handouts_questions(tmp_path, capsys):
    """`factlab lab rope`: the complex form equals the block-rotation matrix, factlab's rotation equals both, and
    the inner product of rotated vectors is the same for every (t1, t2) with one offset, yet varies with it."""
    code, out, err = run(capsys, "rope", "--dim", "8", "--positions", "20", "--out_dir", tmp_path)
    assert code == 0, err
    data = outputs(tmp_path, "rope")
    assert data["passed"] and data["max_spread_within_offset"] < 1e-9 < data["dot_range_over_offsets"]
    assert len(data["offsets"]) == len(data["dot_by_offset"]) == 39 and "True" in out
    code, _, err = run(capsys, "rope", "--dim", "7", "--out_dir", tmp_path)
    assert code == 2 and err.count("\n") == 1 and "--dim must be even" in err
