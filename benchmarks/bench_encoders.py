"""Encoder speed (pytest-benchmark): forward + backward of each encoder over a whole update chunk.

700 steps x 16 copies, input 80 (the transition embedding's width), hidden 256, two trial starts
per copy at different times: the GRU path (``gru_with_resets``, one ``nn.GRU`` call per piece between
reset times) against each scan encoder (:func:`metarl_agents.memory.encoders.linear_scan`). Run with
``OMP_NUM_THREADS=1 python -m pytest benchmarks/bench_encoders.py -o python_files='bench_*.py'
--benchmark-columns=median,rounds``; ``benchmarks/encoder_speed.py`` prints the ratios of one run.
"""

from __future__ import annotations

import pytest
import torch as th

from metarl_agents.memory.encoders import SCAN_ENCODERS, make_scan_encoder
from metarl_agents.memory.sequence import Segments, gru_with_resets, make_gru

CHUNK, N_ENVS, IN_DIM, HIDDEN = 700, 16, 80, 256


def chunk_inputs(seed: int = 0) -> tuple[th.Tensor, th.Tensor]:
    """Inputs ``[CHUNK, N_ENVS, IN_DIM]`` and trial-start flags ``[CHUNK, N_ENVS]``: two starts per copy."""
    gen = th.Generator().manual_seed(seed)
    x = th.randn(CHUNK, N_ENVS, IN_DIM, generator=gen)
    starts = th.zeros(CHUNK, N_ENVS)
    starts[0] = 1.0
    for b in range(N_ENVS):
        starts[th.randint(1, CHUNK, (2,), generator=gen), b] = 1.0
    return x, starts


def encoder_pass(name: str, device: str = "cpu"):
    """A function running one forward + backward of encoder ``name`` ("gru" or a scan encoder) on ``device``."""
    th.manual_seed(0)
    x, starts = chunk_inputs()
    x, seg = x.to(device).requires_grad_(), Segments.from_starts(starts.to(device))
    if name == "gru":
        gru = make_gru(IN_DIM, HIDDEN).to(device)
        h0 = th.zeros(N_ENVS, HIDDEN, device=device)
        return lambda: gru_with_resets(gru, x, h0, seg)[0].sum().backward()
    enc = make_scan_encoder(name, IN_DIM, HIDDEN).to(device)
    state = th.zeros(N_ENVS, enc.state_size, device=device)
    return lambda: enc(x, state, seg)[0].sum().backward()


@pytest.mark.parametrize("name", ["gru", *SCAN_ENCODERS])
def test_encoder_forward_backward(benchmark, name):
    benchmark.group = f"encoder forward+backward, {CHUNK} steps x {N_ENVS} envs, hidden {HIDDEN}"
    benchmark.pedantic(encoder_pass(name), rounds=3, warmup_rounds=1)
