"""`factlab lab EXPERIMENT ...`: run one experiment, print its key numbers as a small table, and write
OUT_DIR/NAME.json and OUT_DIR/NAME.png (atomically)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import torch

from .. import FactlabError
from ..io import write_text_atomic
from . import attention, cost, kqv, plots, rope


def numbers(kind):
    def parse(text: str) -> list:
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    parse.__name__ = f"list of {kind.__name__}"
    return parse


def add_lab_parser(verbs) -> None:
    lab = verbs.add_parser("lab", help="attention lab and cost model: small experiments, printed and saved as "
                                       "JSON and PNG")
    experiments = lab.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")

    def experiment(name: str, helptext: str) -> argparse.ArgumentParser:
        p = experiments.add_parser(name, help=helptext, description=helptext)
        p.add_argument("--out_dir", default="factlab-lab", help=f"writes {name}.json and {name}.png here")
        p.add_argument("--seed", type=int, default=0)
        return p

    def keys(p, scales: bool) -> None:
        p.add_argument("--n_keys", type=int, default=8, help="number of keys and values n")
        p.add_argument("--dim", type=int, default=64, help="dimension of keys and values")
        if scales:
            p.add_argument("--scales", type=numbers(float), default=[0, 1, 2, 4, 8, 16, 32],
                           help="norms of q, comma-separated")
        else:
            p.add_argument("--scale", type=float, default=10.0, help="s in q = s (μ_a + μ_b)")
            p.add_argument("--alpha", type=float, default=1e-4, help="key noise variance α (Σ = αI)")
            p.add_argument("--samples", type=int, default=2000, help="how many times the keys are drawn")

    p = experiment("copy", "copying: ‖c − v_j‖ as q aligns with k_j and its norm grows")
    keys(p, scales=True)
    p.add_argument("--alignments", type=numbers(float), default=[1.0, 0.9, 0.5, 0.0],
                   help="cosines between q and k_j, comma-separated")
    p.add_argument("--target", type=int, default=0, help="j, the value to copy")
    keys(experiment("average", "average of two: c -> (v_a + v_b)/2 for q = s (k_a + k_b), orthonormal keys"),
         scales=True)
    keys(experiment("noisy", "one head under noisy keys: the weight on v_a, isotropic vs stretched k_a"),
         scales=False)
    keys(experiment("two-heads", "one head vs two heads (q1 = s μ_a, q2 = s μ_b) under the stretched k_a"),
         scales=False)

    p = experiment("kqv", "key-query-value self-attention: check K, Q, V against c2 ≈ u_b and c1 ≈ u_b − u_c")
    p.add_argument("--beta", type=float, default=3.0, help="norm β of u_a..u_d")
    p.add_argument("--dim", type=int, default=4, help="dimension d of the built-in constructions (>= 4)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--construction", choices=sorted(kqv.constructions(4)), default="solution")
    source.add_argument("--kqv_file", help="K, Q, V as .json {\"K\": [[..]], \"Q\": .., \"V\": ..} or .npy (3, d, d)")
    p.add_argument("--tolerance", type=float, default=0.05, help="largest relative distance to a goal that passes")

    p = experiment("rope", "rotary embeddings: the complex form equals the block-rotation matrix, and "
                           "<RoPE(z1, t1), RoPE(z2, t2)> depends only on t1 - t2")
    p.add_argument("--dim", type=int, default=16, help="dimension d of the rotated vectors (even)")
    p.add_argument("--positions", type=int, default=64, help="positions t = 0 .. positions - 1")

    p = experiment("cost", "cost model: parameters, FLOPs, activation memory per layer; measured step times")
    p.add_argument("--lengths", type=numbers(int), default=[128, 256, 512, 1024, 2048],
                   help="sequence lengths ℓ (block_size = ℓ), comma-separated")
    p.add_argument("--n_layer", type=int, default=4)
    p.add_argument("--n_head", type=int, default=8)
    p.add_argument("--n_embd", type=int, default=256)
    p.add_argument("--bottleneck_dim", type=int, default=32, help="perceiver latents m")
    p.add_argument("--vocab_size", type=int, default=256, help="default: wiki.txt's 256 characters")
    p.add_argument("--corpus", help="take the vocabulary size from this pretraining corpus (e.g. wiki.txt)")
    p.add_argument("--batch_size", type=int, default=2, help="sequences per timed step")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per variant and ℓ (the median is kept)")
    p.add_argument("--no_measure", action="store_true", help="the formulas only: no timing")


def table(headers: list[str], rows: list[list]) -> str:
    cells = [headers] + [[f"{x:.4g}" if isinstance(x, float) else str(x) for x in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    # the first column names the row: left-aligned; the numbers right-aligned
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def positive(**values) -> None:
    for name, value in values.items():
        if value is None or value <= 0:
            raise FactlabError(f"--{name} must be positive (got {value})")


def run_copy(args) -> tuple[dict, str]:
    positive(dim=args.dim)
    r = attention.copy(args.n_keys, args.dim, args.scales, args.alignments, args.target, args.seed)
    rows = [[f"s = {s:g}", *(r["error"][i][j] for i in range(len(r["alignments"])))]
            for j, s in enumerate(r["scales"])]
    return r, "‖c − v_j‖\n" + table(["", *(f"cos {a:g}" for a in r["alignments"])], rows)


def run_average(args) -> tuple[dict, str]:
    positive(dim=args.dim)
    r = attention.average(args.n_keys, args.dim, args.scales, seed=args.seed)
    rows = [[f"{s:g}", e, wa, wb, pw] for s, e, wa, wb, pw in
            zip(r["scales"], r["error"], r["weight_a"], r["weight_b"], r["predicted_weight"])]
    return r, table(["s", "‖c − (v_a+v_b)/2‖", "α_a", "α_b", "e^s/(2e^s+n−2)"], rows)


def spread_table(r: dict) -> str:
    rows = [[case, s["mean"], s["std"], s["p5"], s["median"], s["p95"], f"{s['near_half']:.1%}",
             s["distance_mean"]] for case, s in r["cases"].items()]
    return table(["", "mean w_a", "std", "p5", "median", "p95", "|w_a − ½| < 0.1", "mean ‖c − (v_a+v_b)/2‖"],
                 rows)


def run_noisy(args, two_heads: bool = False) -> tuple[dict, str]:
    positive(dim=args.dim, alpha=args.alpha, samples=args.samples)
    fn = attention.two_heads if two_heads else attention.noisy
    r = fn(args.n_keys, args.dim, args.scale, args.alpha, args.samples, args.seed)
    text = f"weight w_a on v_a over {args.samples} draws of the keys\n" + spread_table(r)
    if two_heads:
        text += f"\nk_a·μ_a < 0 (head 1 cannot pick v_a at any scale) in {r['away_share']:.1%} of the draws"
    return r, text


def run_kqv(args) -> tuple[dict, str]:
    positive(beta=args.beta, dim=args.dim)
    if args.kqv_file:
        name, (K, Q, V) = Path(args.kqv_file).name, kqv.load(args.kqv_file)
    else:
        if args.dim < 4:
            raise FactlabError(f"--dim must be at least 4 for u_a..u_d (got {args.dim})")
        name, (K, Q, V) = args.construction, kqv.constructions(args.dim)[args.construction]
    eye, first = torch.eye(K.shape[0], dtype=torch.float64), "k = q = v = x"
    results = {first: kqv.check(eye, eye, eye, args.beta, args.tolerance)}  # the question's first case, always
    checked = first if not args.kqv_file and args.construction == "identity" else name
    if checked != first:
        results[name] = kqv.check(K, Q, V, args.beta, args.tolerance)
    rows = [[case, o["c"], o["nearest"], o["relative_distance"], o["goal"] or "–",
             "–" if o["goal"] is None else ("ok" if o["ok"] else "MISS")]
            for case, r in results.items() for o in r["outputs"]]
    r = {"experiment": "kqv", "params": dict(beta=args.beta, tolerance=args.tolerance, source=name),
         "results": results, "checked": checked, "passed": results[checked]["passed"]}
    return r, table(["K, Q, V", "c_i", "nearest target", "‖c_i − t‖/‖t‖", "goal", ""], rows)


def run_cost(args) -> tuple[dict, str]:
    positive(n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd, bottleneck_dim=args.bottleneck_dim,
             vocab_size=args.vocab_size, batch_size=args.batch_size, repeats=args.repeats)
    if not args.lengths or min(args.lengths) <= 0:
        raise FactlabError(f"--lengths must be positive integers (got {args.lengths})")
    if args.n_embd % args.n_head or args.n_layer < 2:
        raise FactlabError("--n_embd must be divisible by --n_head, and the perceiver needs --n_layer >= 2")
    vocab_size = args.vocab_size
    if args.corpus:
        from ..io import read_text
        from ..vocab import Vocab

        vocab_size = len(Vocab.from_text(read_text(args.corpus), args.corpus))
    from .measure import counted_flops, measure

    variants = list(cost.VARIANTS)
    sizes = [cost.Sizes(l, args.n_layer, args.n_head, args.n_embd, args.bottleneck_dim, vocab_size)
             for l in args.lengths]
    analytic, measured, ratios = [], [], []
    for s in sizes:
        row = {"length": s.length}
        for v in variants:
            row[v] = cost.model_costs(v, s, args.batch_size)
            row[v]["flops_counted"] = counted_flops(v, s)  # torch's count of the same FLOPs, as a check
        analytic.append(row)
        if not args.no_measure:
            measured.append({"length": s.length, **measure(variants, s, args.batch_size, args.repeats, args.seed)})
        ratio = {"length": s.length, "score_ratio": cost.score_ratio(s),
                 "flop_ratio": row["perceiver"]["flops"] / row["vanilla"]["flops"],
                 "synthesizer_flop_ratio": row["synthesizer"]["flops"] / row["vanilla"]["flops"]}
        if measured:
            m = measured[-1]
            ratio["measured_ratio"] = m["perceiver"]["cpu_median_s"] / m["vanilla"]["cpu_median_s"]
            ratio["measured_wall_ratio"] = m["perceiver"]["wall_median_s"] / m["vanilla"]["wall_median_s"]
            ratio["synthesizer_measured_ratio"] = m["synthesizer"]["cpu_median_s"] / m["vanilla"]["cpu_median_s"]
            for v in variants:  # how fast the kernels ran: the model's FLOPs over the measured CPU time
                m[v]["gflop_per_s"] = 3 * args.batch_size * row[v]["flops"] / m[v]["cpu_median_s"] / 1e9
        ratios.append(ratio)
    r = {"experiment": "cost", "sizes": {k: v for k, v in asdict(sizes[0]).items() if k not in ("length",
                                                                                                  "block_size")},
         "batch": args.batch_size, "repeats": args.repeats, "threads": torch.get_num_threads(),
         "torch": torch.__version__, "lengths": args.lengths, "variants": variants,
         "analytic": analytic, "measured": measured, "ratios": ratios}
    return r, cost_tables(r)


def cost_tables(r: dict) -> str:
    L, B = r["sizes"]["n_layer"], r["batch"]
    rows = []
    for row in r["analytic"]:
        for v in r["variants"]:
            for layer in row[v]["layers"]:
                rows.append([row["length"], f"{v} {layer['kind']} x{layer['count']}", layer["params"],
                             layer["flops"] / 1e6, layer["score_flops"] / 1e6, layer["activation_bytes"] / 2**20])
    text = [f"per layer (FLOPs forward, per sequence; activations for batch {B}; L = {L})",
            table(["ℓ", "layer", "params", "MFLOP", "of which scores", "activation MiB"], rows)]
    rows = [[row["length"], v, row[v]["params"], 3 * row[v]["flops"] / 1e9, row[v]["activation_bytes"] / 2**20,
             "yes" if row[v]["flops"] == row[v]["flops_counted"] else f"NO ({row[v]['flops_counted']})"]
            for row in r["analytic"] for v in r["variants"]]
    text += ["whole model (forward + backward = 3 x forward FLOPs, per sequence)",
             table(["ℓ", "variant", "params", "fwd+bwd GFLOP", "activation MiB", "= torch's FLOP count"], rows)]
    if r["measured"]:
        rows = []
        for m, ratio, a in zip(r["measured"], r["ratios"], r["analytic"]):
            exact = all(m[v]["activation_bytes"] == a[v]["activation_bytes"] for v in r["variants"])
            rows.append([m["length"], *(m[v]["cpu_median_s"] * 1e3 for v in r["variants"]),
                         ratio["measured_ratio"], ratio["flop_ratio"], ratio["score_ratio"],
                         ratio["synthesizer_measured_ratio"], ratio["synthesizer_flop_ratio"],
                         "yes" if exact else "NO"])
        text += [f"measured forward + backward, batch {B}, median of {r['repeats']} (CPU ms, {r['threads']} thread(s))",
                 table(["ℓ", *(f"{v} ms" for v in r["variants"]), "p/v measured", "p/v FLOPs", "p/v scores",
                        "s/v measured", "s/v FLOPs", "activations = model"], rows),
                 "achieved GFLOP/s (the model's fwd+bwd FLOPs over the measured CPU time)",
                 table(["ℓ", *r["variants"]], [[m["length"], *(m[v]["gflop_per_s"] for v in r["variants"])]
                                                for m in r["measured"]])]
    return "\n".join(text)


def run_rope(args) -> tuple[dict, str]:
    if args.dim < 2 or args.dim % 2 or args.positions < 1:
        raise FactlabError(f"--dim must be even and >= 2, --positions >= 1 (got {args.dim}, {args.positions})")
    r = rope.run(args.dim, args.positions, args.seed)
    text = table(["check", "value", "passes"], [
        ["max |R_t x - complex form|", r["max_abs_matrix_vs_complex"], r["max_abs_matrix_vs_complex"] < 1e-9],
        ["max |factlab rotate - R_t x| (fp32)", r["max_abs_factlab_vs_matrix"], r["max_abs_factlab_vs_matrix"] < 1e-5],
        ["max spread of <RoPE(z1,t1), RoPE(z2,t2)> at one t1 - t2", r["max_spread_within_offset"],
         r["max_spread_within_offset"] < 1e-9],
        ["range of the inner product over offsets", r["dot_range_over_offsets"], "-"]])
    return r, text


RUNNERS = {"copy": run_copy, "average": run_average, "noisy": run_noisy,
           "two-heads": lambda args: run_noisy(args, two_heads=True), "kqv": run_kqv, "cost": run_cost,
           "rope": run_rope}
PLOTS = {"copy": plots.copy, "average": plots.average,
         "noisy": lambda r, p: plots.histograms(r, p, "one head"),
         "two-heads": lambda r, p: plots.histograms(r, p, "stretched k_a"),
         "kqv": lambda r, p: plots.kqv(r["results"], p), "cost": plots.cost, "rope": plots.rope}


def run_lab(args) -> None:
    name = args.experiment
    result, text = RUNNERS[name](args)
    out = Path(args.out_dir)
    # io.atomic_path makes a failed write one line naming the file
    write_text_atomic(out / f"{name}.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    PLOTS[name](result, out / f"{name}.png")
    print(text)
    print(f"wrote {out / name}.json and {out / name}.png")
    if name == "rope" and not result["passed"]:
        raise FactlabError("rope: a check failed (see the table above)")
    if name == "kqv" and not result["passed"]:
        source = result["params"]["source"]
        checked = result["results"][result["checked"]]
        misses = "; ".join(f"{o['c']} ≈ {o['nearest']}, goal {o['goal']}" if o["nearest"] != o["goal"] else
                           f"{o['c']} is {o['relative_distance']:.1%} from {o['goal']} (tolerance "
                           f"{args.tolerance:.1%})" for o in checked["outputs"] if not o["ok"])
        raise FactlabError(f"K, Q, V of {source} miss the targets: {misses}")
