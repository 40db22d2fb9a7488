"""evalplus's output comparison for HumanEval+ and MBPP+: its special oracles and float tolerance.

Trusted task code that runs inside the sandbox's judge (the task sends this file's source in the
judge spec as `oracle`; see `tuner_eval.tasks`), so it must stay self-contained: standard library
and numpy only, no `from __future__` imports, no imports from tuner_eval.

Written from evalplus 0.3.1 (`evalplus/eval/__init__.py: unsafe_execute`,
`evalplus/eval/_special_oracle.py`, `evalplus/gen/util/__init__.py: trusted_exec`):

- an output passes when `out == exp` (Python equality, whatever the size of the value, so 1 and
  1.0 are equal), or by the task's special oracle;
- otherwise, when the group's tolerance `atol` is not zero, when `type(out) == type(exp)`, lists
  and tuples have the same length and `numpy.allclose(out, exp, rtol=1e-07, atol=atol)`;
- a zero `atol` becomes 1e-6 at the first input whose expected output is a float or a list/tuple
  of floats, and stays so for the rest of that group's inputs (evalplus assigns the loop's `atol`
  variable; `comparator` carries it the same way, one comparator per group);
- MBPP tasks whose outputs are not comparable keep only "is not None" (the reference's output is
  turned into that boolean, `reference_output`).

One deliberate difference: evalplus 0.3.1 fails every answer to HumanEval/32 (its find_zero
branch skips the bookkeeping that counts an input as passed); here the oracle's rule applies.
"""

import math

MBPP_OUTPUT_NOT_NONE_TASKS = frozenset({"check_str", "text_match_three", "text_starta_endb"})
MBPP_OUTPUT_SET_EQ_TASKS = frozenset({
    "similar_elements",  # Mbpp/2
    "find_char_long",  # Mbpp/7
    "common_in_nested_lists",  # Mbpp/111
    "extract_singly",  # Mbpp/140
    "larg_nnum",  # Mbpp/232
    "intersection_array",  # Mbpp/249
    "find_dissimilar",  # Mbpp/579
    "Diff",  # Mbpp/769
})
FLOAT_ATOL = 1e-6
"""The tolerance evalplus enforces for float outputs when the task's `atol` is 0."""


def _surface_area(base_edge, height):
    """Mbpp/581: the height is the perpendicular distance from the base to the apex."""
    slant_height = math.sqrt((base_edge / 2) ** 2 + height ** 2)
    return round(base_edge ** 2 + 4 * (base_edge * slant_height) / 2)


def _digit_distance_nums(num1, num2):
    """Mbpp/558: the numbers are zero-padded to the same length first."""
    a, b = str(num1), str(num2)
    width = max(len(a), len(b))
    return sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(width), b.zfill(width)))


def _poly(xs, x):
    """HumanEval/32: the polynomial with coefficients `xs` at `x`."""
    return sum([coeff * math.pow(x, i) for i, coeff in enumerate(xs)])


def is_floats(value):
    """A float, or a non-empty list/tuple of floats (or a float numpy array)."""
    if isinstance(value, float):
        return True
    if isinstance(value, (list, tuple)) and value:
        return all(isinstance(item, float) for item in value)
    if type(value).__name__ == "ndarray" and type(value).__module__ == "numpy":
        return value.dtype.kind == "f" and value.dtype.itemsize in (4, 8)
    return False


def reference_output(out, dataset, entry_point, atol):
    """What the judge compares against: the reference's output, or for MBPP's not-None tasks
    whether it is not None (evalplus's `trusted_exec(..., output_not_none=True)`)."""
    if dataset == "mbpp" and entry_point in MBPP_OUTPUT_NOT_NONE_TASKS:
        return out is not None
    return out


def comparator(dataset, entry_point, atol):
    """`compare(inp, out, exp) -> bool` for one group of inputs, judged in order."""
    state = {"atol": atol}

    def compare(inp, out, exp):
        exact_match = out == exp
        if dataset == "mbpp":
            if entry_point == "are_equivalent":  # Mbpp/164
                exact_match = True
            elif entry_point == "sum_div":  # Mbpp/295
                exact_match = exact_match or out == 0
            elif entry_point == "surface_Area":  # Mbpp/581
                exact_match = exact_match or abs(out - _surface_area(*inp)) <= state["atol"]
            elif entry_point == "digit_distance_nums":  # Mbpp/558
                exact_match = exact_match or out == _digit_distance_nums(*inp)
            elif entry_point in MBPP_OUTPUT_SET_EQ_TASKS:
                exact_match = set(out) == set(exp)
            elif entry_point in MBPP_OUTPUT_NOT_NONE_TASKS:
                exact_match = out == exp if isinstance(out, bool) else exp == (out is not None)
        if dataset == "humaneval" and entry_point == "find_zero":  # HumanEval/32
            return bool(abs(_poly(*inp, out)) <= state["atol"])
        if state["atol"] == 0 and is_floats(exp):
            state["atol"] = FLOAT_ATOL
        if not exact_match and state["atol"] != 0:
            import numpy as np

            if type(out) is not type(exp):
                return False
            if isinstance(exp, (list, tuple)) and len(out) != len(exp):
                return False
            return bool(np.allclose(out, exp, rtol=1e-07, atol=state["atol"]))
        return bool(exact_match)

    return compare
