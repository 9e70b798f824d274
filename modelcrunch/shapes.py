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


def data_shapes(model_inputs: dict[str, object], samples: list[dict]) -> dict[str, list[int | str]]:
    """``--shape``-style overrides from real data: the first sample's dims of each model input.

    ``model_inputs`` maps input names to their declared dims (ints, symbol names or None); only
    the dims the model leaves open are taken from the data (``"?"`` keeps a fixed dim), so shape
    analysis (MACs, channel groups, synthesized feeds) sees the dims the data really has.
    """
    if not samples:
        return {}
    shapes: dict[str, list[int | str]] = {}
    for name, declared in model_inputs.items():
        array = samples[0].get(name)
        dims = list(declared) if declared is not None else None
        if array is None or dims is None or len(dims) != array.ndim:
            continue
        shapes[name] = [
            "?" if isinstance(d, int) and d > 0 else int(n) for d, n in zip(dims, array.shape, strict=True)
        ]
    return {name: dims for name, dims in shapes.items() if any(d != "?" for d in dims)}


def with_data_shapes(
    shapes: dict[str, list[int | str]] | None, model_inputs: dict[str, object], samples: list[dict] | None
) -> dict[str, list[int | str]]:
    """The user's ``--shape`` overrides, with every input they leave out filled in from ``samples``."""
    merged = data_shapes(model_inputs, samples or [])
    merged.update(shapes or {})
    return merged


def data_batch(model_inputs: dict[str, object], wanted: int) -> int:
    """How many one-sample feeds to stack per run: ``wanted``, or 1 when an input fixes its leading
    dim (a model exported with batch 1, a recurrent state ``[2, n, 128]``) or has no axis at all (a
    0-d sample rate): such samples are fed one at a time, as stored."""
    for dims in model_inputs.values():
        if dims is not None and (len(dims) == 0 or (isinstance(dims[0], int) and dims[0] > 0)):
            return 1
    return wanted
