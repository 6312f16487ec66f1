"""The attention lab and the cost model (`factlab lab ...`).

attention.py  copying, averaging, noisy keys with one and two heads: c = Σ α_i v_i, α = softmax(K q)
kqv.py        key-query-value self-attention on x1 = u_d + u_b, x2 = u_a, x3 = u_c + u_b; K, Q, V checks
cost.py       parameters, FLOPs and activation memory per layer of the three variants, as formulas
measure.py    the same quantities and step times measured on factlab.model.GPT
plots.py      one figure per experiment
commands.py   the argparse subcommands, tables, JSON and PNG outputs
"""

from .commands import add_lab_parser, run_lab

__all__ = ["add_lab_parser", "run_lab"]
