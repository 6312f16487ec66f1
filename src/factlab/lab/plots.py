"""One figure per lab experiment, drawn from the experiment's JSON-ready result so that plot and numbers agree.
matplotlib's object API with the Agg canvas: no display and no global pyplot state."""

from __future__ import annotations

from pathlib import Path

from ..io import atomic_path


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.8):
    from matplotlib.figure import Figure  # imported here: only the lab needs matplotlib

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False).ravel()


def save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def copy(r: dict, path: Path) -> None:
    fig, (ax,) = new_figure()
    for a, err in zip(r["alignments"], r["error"]):
        ax.plot(r["scales"], err, marker="o", label=f"cos(q, k_j) = {a:g}")
    ax.set(xlabel="scale s = ‖q‖", ylabel="‖c − v_j‖", title="copying v_j")
    ax.legend()
    save(fig, path)


def average(r: dict, path: Path) -> None:
    fig, (ax, bx) = new_figure(2)
    ax.semilogy(r["scales"], [max(e, 1e-17) for e in r["error"]], marker="o")
    ax.set(xlabel="s in q = s (k_a + k_b)", ylabel="‖c − (v_a + v_b)/2‖", title="average of two")
    bx.plot(r["scales"], r["weight_a"], marker="o", label="α_a measured")
    bx.plot(r["scales"], r["predicted_weight"], ls="--", label="e^s / (2e^s + n − 2)")
    bx.set(xlabel="s", ylabel="weight", ylim=(0, 0.55))
    bx.legend()
    save(fig, path)


def histograms(r: dict, path: Path, title: str) -> None:
    cases = r["cases"]
    fig, axes = new_figure(len(cases))
    for ax, (case, stats) in zip(axes, cases.items()):
        counts = stats["histogram"]
        edges = [i / len(counts) for i in range(len(counts))]
        ax.bar(edges, counts, width=1 / len(counts), align="edge")
        ax.set(xlabel="weight on v_a", ylabel="samples", xlim=(0, 1),
               title=f"{title}: {case}\nstd {stats['std']:.3f}, |w − ½| < 0.1 in {stats['near_half']:.0%}")
    save(fig, path)


def kqv(results: dict, path: Path) -> None:
    fig, axes = new_figure(2, len(results), width=4.5, height=3.2)
    for row, (name, r) in enumerate(results.items()):
        ax, bx = axes[2 * row], axes[2 * row + 1]
        ax.imshow(r["attention"], vmin=0, vmax=1, cmap="viridis")
        ax.set(title=f"{name}: attention weights", xlabel="input j", ylabel="query i",
               xticks=range(3), yticks=range(3), xticklabels=["x1", "x2", "x3"], yticklabels=["c1", "c2", "c3"])
        coords = [o["coordinates_over_beta"][:4] for o in r["outputs"]]
        bx.imshow(coords, vmin=-1, vmax=1, cmap="coolwarm")
        bx.set(title="c_i / β on u_a..u_d  (" + ("pass" if r["passed"] else "fail") + ")",
               xticks=range(4), yticks=range(3), xticklabels=["u_a", "u_b", "u_c", "u_d"],
               yticklabels=[f"c{i + 1} ≈ {o['nearest']}" for i, o in enumerate(r["outputs"])])
    save(fig, path)


def cost(r: dict, path: Path) -> None:
    from matplotlib.ticker import NullLocator

    fig, (ax, bx, cx, dx) = new_figure(2, 2)
    lengths = r["lengths"]
    for v in r["variants"]:
        analytic = [row[v]["flops"] / r["sizes"]["n_layer"] for row in r["analytic"]]
        ax.loglog(lengths, analytic, marker="o", label=v)
        dx.loglog(lengths, [row[v]["activation_bytes"] / 2**20 for row in r["analytic"]], marker="o", label=v)
        if r["measured"]:
            bx.loglog(lengths, [row[v]["cpu_median_s"] * 1e3 for row in r["measured"]], marker="o", label=v)
            dx.loglog(lengths, [row[v]["activation_bytes"] / 2**20 for row in r["measured"]], ls="", marker="x",
                      color="k")
    ax.set(xlabel="sequence length ℓ", ylabel="forward FLOPs per layer, per sequence", title="cost model")
    bx.set(xlabel="ℓ", ylabel="ms (median CPU time)", title=f"measured forward + backward, batch {r['batch']}")
    dx.set(xlabel="ℓ", ylabel="MiB", title=f"saved activations, batch {r['batch']} (x: measured)")
    cx.loglog(lengths, [row["score_ratio"] for row in r["ratios"]], marker="o",
              label="predicted: attention scores ((L−2)m² + 2ℓm)/(Lℓ²)")
    cx.loglog(lengths, [row["flop_ratio"] for row in r["ratios"]], marker="o", label="predicted: whole-model FLOPs")
    if r["measured"]:
        cx.loglog(lengths, [row["measured_ratio"] for row in r["ratios"]], marker="o", label="measured time")
    cx.set(xlabel="ℓ", ylabel="perceiver / vanilla", title="perceiver / vanilla cost")
    for a in (ax, bx, cx, dx):
        a.set_xticks(lengths, [str(n) for n in lengths], minor=False)
        a.xaxis.set_minor_locator(NullLocator())
        if a.get_legend_handles_labels()[0]:  # the measured panel is empty under --no_measure
            a.legend(fontsize=7)
    save(fig, path)


def rope(r: dict, path: Path) -> None:
    fig, (ax,) = new_figure(width=6.0)
    ax.plot(r["offsets"], r["dot_by_offset"], marker=".", lw=1)
    ax.set(xlabel="t1 − t2", ylabel="⟨RoPE(z1, t1), RoPE(z2, t2)⟩",
           title=f"depends on t1 − t2 only (spread at one offset ≤ {r['max_spread_within_offset']:.1e})")
    save(fig, path)
