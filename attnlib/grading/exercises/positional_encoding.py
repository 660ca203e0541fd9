"""The exercises of chapter 03 (positional encoding): inputs, references, what they teach."""

from __future__ import annotations

import numpy as np

from . import Case, Exercise


def _table_cases(rng: np.random.Generator) -> list[Case]:
    return [Case((n, d)) for n, d in [(4, 6), (3, 5), (1, 1), (7, 2), (50, 16), (33, 17),
                                      (40, 64), (0, 4), (10, 3)]]


def _table_reference(n_positions, d_model):
    import attnlib
    return attnlib.sinusoidal_encoding(n_positions, d_model)


def _rotation_cases(rng: np.random.Generator) -> list[Case]:
    return [Case((k, d)) for k, d in [(3, 8), (0, 8), (1, 32), (-1, 32), (7, 32), (-20, 32),
                                      (150, 32), (4, 16), (9, 16), (13, 16), (2, 2)]]


def _rotation_reference(k, d_model):
    """The block-diagonal rotation that takes PE[p] to PE[p + k]: one 2 x 2 block per
    frequency omega_i, turning (sin, cos) by the angle k * omega_i."""
    omega = 10000.0 ** (-np.arange(0, d_model, 2) / d_model)
    m = np.zeros((d_model, d_model))
    for i, (c, s) in enumerate(zip(np.cos(k * omega), np.sin(k * omega))):
        m[2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[c, s], [-s, c]]
    return m


def _relative_cases(rng: np.random.Generator) -> list[Case]:
    return [Case(args) for args in [(3, 4, 2), (5, 2, 1), (1, 6, 10), (7, 7, 0), (12, 9, 4),
                                    (0, 3, 2), tuple(int(n) for n in rng.integers(1, 12, size=3))]]


def _relative_reference(n_q, n_k, max_distance):
    offsets = np.arange(n_k)[None, :] - np.arange(n_q)[:, None]
    return np.clip(offsets, -max_distance, max_distance)


def _rope_cases(rng: np.random.Generator) -> list[Case]:
    cases = [Case((np.array([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0], [0.0, 2.0, 0.0, 2.0]]),
                   np.array([0, 1, 2])))]
    for shape in [(5, 2), (2, 3, 7, 16), (4, 64)]:
        cases.append(Case((rng.normal(size=shape), rng.integers(0, 5000, size=shape[-2]))))
    cases.append(Case((rng.normal(size=(6, 8)), np.array([0.5, 1.5, 2.25, 10.0, 99.9, 3.0])),
                      label="float positions"))
    q = rng.normal(size=(1, 32))
    cases += [Case((q, [m])) for m in (3, 103, 50, 1234)]
    return cases


def _rope_reference(x, positions):
    import attnlib
    return attnlib.apply_rope(x, np.asarray(positions))


def _slopes_reference(n_heads):
    import attnlib
    return attnlib.alibi_slopes(n_heads)


EXERCISES = [
    Exercise("sinusoidal_table", _table_cases, _table_reference, rtol=1e-12, atol=1e-12,
             teaches=("attnlib.sinusoidal_encoding",),
             hint="compute the angles p / 10000**(2i/d_model) with numpy"),
    Exercise("offset_rotation", _rotation_cases, _rotation_reference, rtol=1e-9, atol=1e-12),
    Exercise("relative_positions", _relative_cases, _relative_reference, rtol=0, atol=0),
    Exercise("rope_rotate", _rope_cases, _rope_reference, rtol=1e-9, atol=1e-9,
             teaches=("attnlib.apply_rope",), hint="rotate each pair (x[2i], x[2i+1]) with numpy"),
    Exercise("alibi_head_slopes", lambda rng: [Case((n,)) for n in range(1, 65)],
             _slopes_reference, rtol=1e-12, atol=0, teaches=("attnlib.alibi_slopes",),
             hint="build the geometric sequence 2**(-8 h / n) and interleave for other n"),
]
