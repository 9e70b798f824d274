"""ONNX Runtime sessions: provider names, session options, and models held in memory.

* :func:`resolve_provider` maps a short name (``cpu``, ``cuda``, ``tensorrt``, ``openvino``,
  ``dml``, ``coreml``) or a full ONNX Runtime name to the provider, and refuses one that this
  onnxruntime build lacks with one line naming the installed providers and the package that
  brings the missing one — never a silent fall-back to CPU.
* :func:`make_session` builds an ``InferenceSession`` and confirms, from
  ``session.get_providers()``, that the requested provider really is in use (ONNX Runtime
  falls back to CPU with only a log warning when, say, the CUDA libraries fail to load).
  An ``ir.Model`` is written with ``onnx_ir.save`` into a temporary folder (weights as external
  data) and the session is created from that path; the folder is removed afterwards.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

import onnx_ir as ir
import onnxruntime as ort

from modelcrunch.errors import ModelcrunchError

logger = logging.getLogger(__name__)

PROVIDERS: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
#: The pip package that brings each provider.
PROVIDER_PACKAGES: dict[str, str] = {
    "CUDAExecutionProvider": "onnxruntime-gpu",
    "TensorrtExecutionProvider": "onnxruntime-gpu (plus TensorRT)",
    "OpenVINOExecutionProvider": "onnxruntime-openvino",
    "DmlExecutionProvider": "onnxruntime-directml (Windows)",
    "CoreMLExecutionProvider": "onnxruntime (the macOS build)",
    "CPUExecutionProvider": "onnxruntime",
}
OPT_LEVELS: dict[str, ort.GraphOptimizationLevel] = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

ModelLike = str | os.PathLike | ir.Model


def resolve_provider(name: str) -> str:
    """``"cuda"`` → ``"CUDAExecutionProvider"``, checked against the installed onnxruntime."""
    key = name.strip()
    full = PROVIDERS.get(key.lower())
    if full is None:
        by_lower = {p.lower(): p for p in [*PROVIDERS.values(), *ort.get_available_providers()]}
        full = by_lower.get(key.lower())
    if full is None:
        raise ModelcrunchError(
            f"unknown provider '{name}'; choose one of {', '.join(PROVIDERS)} (or a full ONNX Runtime name)"
        )
    available = ort.get_available_providers()
    if full not in available:
        package = PROVIDER_PACKAGES.get(full, "an onnxruntime build that includes it")
        raise ModelcrunchError(
            f"provider '{name}' ({full}) is not available in this onnxruntime; installed providers: "
            f"{', '.join(available)}; install {package} to use it"
        )
    return full


#: Session config for a session that runs alternately with others in one process (a fidelity
#: measurement's reference and candidate): its threads spin while a run
#: lasts but stop when it ends, instead of spinning on, idle, on the cores the next session's run
#: needs. Magika's reference and int8 model run one sample each in turn, 64 samples, 2 threads:
#: 0.75 s spinning, 0.45 s with spinning off, 0.35 s with this.
ALTERNATING = {"session.force_spinning_stop": "1"}


def session_options(
    *,
    threads: int | None = None,
    inter_threads: int | None = None,
    optimization: str = "all",
    spinning: bool = True,
    parallel: bool = False,
    config: Mapping[str, str] | None = None,
) -> ort.SessionOptions:
    """SessionOptions from typed arguments (``optimization``: disable|basic|extended|all)."""
    if optimization not in OPT_LEVELS:
        raise ModelcrunchError(f"unknown optimisation level '{optimization}'; choose {', '.join(OPT_LEVELS)}")
    for label, value in (("threads", threads), ("inter-op threads", inter_threads)):
        if value is not None and value < 0:
            raise ModelcrunchError(f"{label} must be >= 0 (0 = ONNX Runtime's default), got {value}")
    options = ort.SessionOptions()
    options.graph_optimization_level = OPT_LEVELS[optimization]
    options.log_severity_level = 4  # fatal only: ORT's errors come back as exceptions (our one line)
    if threads is not None:
        options.intra_op_num_threads = threads
    if inter_threads is not None:
        options.inter_op_num_threads = inter_threads
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, str(value))
    return options


@contextmanager
def model_path(model: ModelLike) -> Iterator[Path]:
    """A path to ``model`` on disk: the path itself, or an ``ir.Model`` saved to a temporary folder."""
    if not isinstance(model, ir.Model):
        path = Path(model)
        if not path.is_file():
            raise ModelcrunchError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="modelcrunch-") as tmp:
        path = Path(tmp) / "model.onnx"
        ir.save(model, path, external_data="model.onnx.data")
        yield path


def make_session(
    model: ModelLike,
    *,
    provider: str = "cpu",
    threads: int | None = None,
    optimization: str = "all",
    spinning: bool = True,
    inter_threads: int | None = None,
    parallel: bool = False,
    config: Mapping[str, str] | None = None,
    options: ort.SessionOptions | None = None,
) -> ort.InferenceSession:
    """An InferenceSession on ``provider`` (CPU as fall-back only for ops the provider lacks).

    Raises ModelcrunchError when the provider is not installed, the model does not load, or the
    session ends up not using the requested provider.
    """
    full = resolve_provider(provider)
    if options is None:
        options = session_options(
            threads=threads,
            inter_threads=inter_threads,
            optimization=optimization,
            spinning=spinning,
            parallel=parallel,
            config=config,
        )
    providers = [full] if full == "CPUExecutionProvider" else [full, "CPUExecutionProvider"]
    with model_path(model) as path:
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises several unrelated types
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            name = "<in-memory model>" if isinstance(model, ir.Model) else str(model)
            raise ModelcrunchError(f"{name}: ONNX Runtime cannot create a session ({detail})") from exc
    if not session.get_outputs():
        name = "<in-memory model>" if isinstance(model, ir.Model) else str(model)
        raise ModelcrunchError(f"{name}: the model has no outputs")
    used = session.get_providers()
    if full not in used:
        raise ModelcrunchError(
            f"requested provider {full} but the session runs on {', '.join(used)} "
            "(the provider failed to initialise; check its libraries/drivers)"
        )
    logger.debug("session on %s", used)
    return session


def load_problem(model: str | os.PathLike) -> str | None:
    """Why ONNX Runtime (CPU, no graph optimisation) refuses to load ``model``, or None when it loads."""
    try:
        make_session(model, optimization="disable")
    except ModelcrunchError as exc:
        return str(exc)
    return None


def run_checked(session: ort.InferenceSession, feed: Mapping[str, object], *, name: str = "model") -> list:
    """``session.run(None, feed)``, with ONNX Runtime's failures turned into one-line errors."""
    try:
        return session.run(None, dict(feed))
    except Exception as exc:  # noqa: BLE001 - ORT raises Fail/InvalidArgument/RuntimeException
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelcrunchError(f"{name}: ONNX Runtime failed to run on these inputs ({detail})") from exc


@runtime_checkable
class Runner(Protocol):
    """What the measuring code needs of a session: ``ort.InferenceSession`` or a wrapper of one
    (e.g. one that replays cached outputs)."""

    def run(self, output_names, input_feed, run_options=None) -> list: ...  # noqa: ANN001

    def get_inputs(self) -> list: ...

    def get_outputs(self) -> list: ...
