"""Parsing and applying ``--shape NAME=1x3x224x224`` overrides for dynamic input dims."""

from __future__ import annotations

from modelcrunch.errors import ModelcrunchError


def parse_shape_overrides(specs: list[str]) -> dict[str, list[int | str]]:
    """``["input=1x3x224x224", "ids=8x?"]`` → ``{"input": [1, 3, 224, 224], "ids": [8, "?"]}``.

    A ``?`` keeps that dim as the model has it.
    """
    shapes: dict[str, list[int | str]] = {}
    for spec in specs:
        name, sep, dims = spec.rpartition("=")
        if not sep or not name or not dims:
            raise ModelcrunchError(f"--shape '{spec}': expected NAME=DIMS, e.g. input=1x3x224x224")
        parsed: list[int | str] = []
        for dim in dims.lower().replace(",", "x").split("x"):
            dim = dim.strip()
            if dim == "?":
                parsed.append("?")
                continue
            if not dim.isdigit() or int(dim) <= 0:
                raise ModelcrunchError(f"--shape '{spec}': dimension '{dim}' is not a positive integer")
            if int(dim) >= 2**31:  # ONNX and ONNX Runtime hold dims in 64 bits; no tensor is this long
                raise ModelcrunchError(f"--shape '{spec}': dimension {dim} is out of range")
            parsed.append(int(dim))
        shapes[name] = parsed
    return shapes


def check_input_names(overrides: dict[str, object], input_names: list[str], flag: str = "--shape") -> None:
    unknown = sorted(set(overrides) - set(input_names))
    if unknown:
        raise ModelcrunchError(
            f"{flag}: unknown input name '{unknown[0]}'; the model's inputs are: {', '.join(input_names)}"
        )
