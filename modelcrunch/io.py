"""Model I/O that never loses data.

* ``load_model`` reads an ``.onnx`` file (and its external-data files) into an onnx-ir ``Model``
  (weights in external data are read into memory below protobuf's 2 GB limit, so that any copy
  saved elsewhere is complete; larger models stay memory-mapped), refuses external-data
  references that escape the model's folder, and canonicalises the graph: weights held in
  ``Constant`` nodes — in the main graph and in every If/Loop/Scan subgraph — become initializers.
* ``save_model`` writes atomically: the model is written into a temporary folder beside the
  destination, verified (``onnx.checker`` and an ONNX Runtime session), then renamed into place.
  On any failure, or an interrupt, the destination is untouched and no partial file remains.
  It refuses to write over the input model unless asked to.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError
from onnx_ir.passes.common import LiftConstantsToInitializersPass

from modelcrunch.errors import ModelcrunchError, VerificationError

logger = logging.getLogger(__name__)

#: Protobuf cannot serialise a message over 2 GiB; above this many weight bytes we use external data.
PROTOBUF_LIMIT_BYTES = 2**31 - 1
EXTERNAL_DATA_THRESHOLD_BYTES = int(1.8 * 2**30)
#: Every tensor-valued Constant is lifted (size limit 0): weights, biases and scalars alike, so that
#: passes see one kind of constant. ``value_ints``-style Constants stay nodes.
LIFT_SIZE_LIMIT = 0


# --------------------------------------------------------------------------------------------
# Walking every tensor of a ModelProto (initializers, Constant attributes, subgraphs, functions)
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_cwd() -> Iterator[None]:
    """Run a third-party tool inside a temporary working directory, removed afterwards: ONNX
    Runtime's symbolic shape inference drops ``sym_shape_infer_temp.onnx`` in the current one."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="modelcrunch-cwd-") as tmp:
        os.chdir(tmp)
        try:
            yield
        finally:
            os.chdir(previous)


def node_subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The If/Loop/Scan bodies held in ``node``'s attributes."""
    return [sub for attr in node.attribute for sub in ([attr.g] if attr.HasField("g") else [*attr.graphs])]


def names_read(graph: onnx.GraphProto) -> set[str]:
    """Every name a node of ``graph`` or of its subgraphs reads (outer-scope references too)."""
    read = {o.name for o in graph.output}
    for node in graph.node:
        read.update(node.input)
        for sub in node_subgraphs(node):
            read |= names_read(sub)
    return read


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    for sub in node_subgraphs(node):
        yield from _graph_tensors(sub)
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices


def iter_proto_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every TensorProto in the model: graph, subgraphs, Constant attributes and functions."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node)


def _external_location(tensor: onnx.TensorProto) -> tuple[str, int, int | None] | None:
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return None
    info = {entry.key: entry.value for entry in tensor.external_data}
    name = tensor.name or "<unnamed>"
    location = info.get("location", "")
    if "\0" in location or len(location) > 4096:
        shown = location[:60].replace("\0", "\\0")
        raise ModelcrunchError(f"tensor '{name}': malformed external data location '{shown}'")

    def integer(key: str) -> int | None:
        text = info.get(key)
        if not text:
            return None
        if not text.isdigit() or len(text) > 18:
            raise ModelcrunchError(f"tensor '{name}': external data {key} '{text[:40]}' is not a byte count")
        return int(text)

    return location, integer("offset") or 0, integer("length")


def external_data_files(model: onnx.ModelProto, base_dir: Path) -> list[Path]:
    """Check every external-data reference and return the distinct files, resolved.

    Raises ModelcrunchError for a location that escapes ``base_dir`` (absolute path, ``..``,
    a symlink pointing outside), a missing file, or a reference past the end of the file.
    """
    root = base_dir.resolve()
    files: dict[Path, int] = {}
    for tensor in iter_proto_tensors(model):
        ref = _external_location(tensor)
        if ref is None:
            continue
        location, offset, length = ref
        name = tensor.name or "<unnamed>"
        if not location:
            raise ModelcrunchError(f"tensor '{name}' is stored externally but names no file")
        if os.path.isabs(location) or Path(location).is_absolute() or location.startswith(("/", "\\")):
            raise ModelcrunchError(
                f"tensor '{name}': external data location '{location}' is an absolute path; "
                "refusing to read outside the model's folder"
            )
        if ".." in Path(location.replace("\\", "/")).parts:
            raise ModelcrunchError(
                f"tensor '{name}': external data location '{location}' escapes the model's folder"
            )
        resolved = (root / location).resolve()
        if not resolved.is_relative_to(root):
            raise ModelcrunchError(
                f"tensor '{name}': external data location '{location}' resolves outside the model's "
                "folder (symlink); refusing to read it"
            )
        if not resolved.is_file():
            raise ModelcrunchError(f"tensor '{name}': external data file '{location}' is missing")
        size = files.get(resolved)
        if size is None:
            size = files[resolved] = resolved.stat().st_size
        if length is not None and offset + length > size:
            raise ModelcrunchError(
                f"tensor '{name}': external data file '{location}' is truncated "
                f"(needs bytes {offset}..{offset + length}, file has {size})"
            )
    return list(files)


def check_tensors(model: onnx.ModelProto) -> None:
    """Raise ModelcrunchError for a tensor whose dims are negative or whose stored bytes do not
    match its shape (a truncated or hand-edited file), before anything reads it."""
    for tensor in iter_proto_tensors(model):
        name = tensor.name or "<unnamed>"
        if any(d < 0 for d in tensor.dims):
            raise ModelcrunchError(f"tensor '{name}' has negative dims {list(tensor.dims)}")
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.data_type == onnx.TensorProto.STRING:
            continue
        count = math.prod(tensor.dims)
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        except (KeyError, ValueError, TypeError):
            raise ModelcrunchError(f"tensor '{name}' has unknown data type {tensor.data_type}") from None
        if tensor.HasField("raw_data"):
            bits = 4 if dtype.itemsize == 1 and tensor.data_type in _FOUR_BIT else dtype.itemsize * 8
            expected = (count * bits + 7) // 8
            if len(tensor.raw_data) != expected:
                raise ModelcrunchError(
                    f"tensor '{name}' holds {len(tensor.raw_data)} bytes, its shape {list(tensor.dims)} "
                    f"needs {expected} (truncated or corrupt)"
                )


_FOUR_BIT = {
    getattr(onnx.TensorProto, n) for n in ("INT4", "UINT4", "FLOAT4E2M1") if hasattr(onnx.TensorProto, n)
}


def model_size_bytes(path: str | os.PathLike) -> int:
    """On-disk size of a model: the ``.onnx`` file plus every external-data file it references."""
    path = Path(path)
    proto = _read_proto(path)
    return path.stat().st_size + sum(f.stat().st_size for f in external_data_files(proto, path.parent))


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _read_proto(path: Path) -> onnx.ModelProto:
    if not path.exists():
        raise ModelcrunchError(f"{path}: no such file")
    if path.is_dir():
        raise ModelcrunchError(f"{path}: is a folder, not an ONNX model file")
    if path.stat().st_size == 0:
        raise ModelcrunchError(f"{path}: empty file, not an ONNX model")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelcrunchError(
            f"{path}: not a valid ONNX model (truncated or corrupt protobuf: {detail})"
        ) from exc
    except OSError as exc:
        raise ModelcrunchError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    # A non-ONNX file can decode as a protobuf with unknown fields only; require a real model.
    if (
        proto.ir_version <= 0
        or not proto.HasField("graph")
        or (len(proto.graph.node) == 0 and len(proto.graph.output) == 0)
    ):
        raise ModelcrunchError(f"{path}: not an ONNX model (no graph / IR version found)")
    return proto


def canonicalize(model: ir.Model) -> ir.Model:
    """Lift weights held in ``Constant`` nodes (main graph and subgraphs) into initializers."""
    if model.ir_version is not None and model.ir_version < 4:
        # Before IR v4 every initializer also had to be a graph input; leave such models alone.
        logger.info("IR version %s < 4: Constant weights are not lifted", model.ir_version)
        return model
    LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=LIFT_SIZE_LIMIT)(model)
    return model


def load_model(path: str | os.PathLike, *, canonical: bool = True) -> ir.Model:
    """Load an ONNX model lazily (weights are not read until used) and canonicalise it."""
    path = Path(path)
    proto = _read_proto(path)
    external_data_files(proto, path.parent)
    check_tensors(proto)
    try:
        model = ir.serde.deserialize_model(proto)
    except Exception as exc:  # noqa: BLE001 - onnx-ir raises many types on malformed graphs
        raise ModelcrunchError(f"{path}: malformed ONNX graph ({type(exc).__name__}: {exc})") from exc
    ir.external_data.set_base_dir(model.graph, str(path.parent))
    if weight_bytes(model) <= EXTERNAL_DATA_THRESHOLD_BYTES:
        # Weights in external data are read now: every copy the passes save to a temporary
        # folder (a session's model, a capture, the reference) is then complete by itself.
        # Larger models stay memory-mapped (no single protobuf could hold them anyway).
        ir.external_data.load_to_model(model)
    model = canonicalize(model) if canonical else model
    model.meta[ANNOTATED] = frozenset(_value_info_names(proto.graph))
    return model


def _value_info_names(graph: onnx.GraphProto) -> Iterator[str]:
    for info in graph.value_info:
        yield info.name
    for node in graph.node:
        for attr in node.attribute:
            for sub in (attr.g, *attr.graphs) if attr.HasField("g") else attr.graphs:
                yield from _value_info_names(sub)


#: ``model.meta`` key: the names of the intermediate values the loaded file annotated (value_info).
#: A write keeps those and drops the shapes and types the passes attached on the way: a 0.2 MB
#: model's inferred value_info alone made its factorized copy 14 % larger than the original.
ANNOTATED = "modelcrunch.annotated"


def _intermediates(model: ir.Model) -> Iterator[ir.Value]:
    """Node outputs and initializers, graph inputs and outputs aside (onnx-ir writes value_info for
    every initializer that carries a type)."""
    ends = {id(v) for graph in model.graphs() for v in (*graph.inputs, *graph.outputs)}
    for graph in model.graphs():
        for value in graph.initializers.values():
            if id(value) not in ends:
                yield value
        for node in graph:
            for value in node.outputs:
                if id(value) not in ends:
                    yield value


def _annotated(value: ir.Value) -> bool:
    return value.shape is not None or value.type is not None


@contextlib.contextmanager
def _as_annotated_on_load(model: ir.Model) -> Iterator[None]:
    """Within the block, the intermediate values that the loaded file did not annotate carry no
    shape or type (they are restored after): what the write adds is the passes' work, not
    value_info. Models not loaded by :func:`load_model` are written as they are."""
    kept = model.meta.get(ANNOTATED)
    cleared: list[tuple[ir.Value, ir.TypeProtocol | None, ir.Shape | None]] = []
    if kept is not None:
        for value in _intermediates(model):
            if value.name not in kept and _annotated(value):
                cleared.append((value, value.type, value.shape))
                value.shape = None
                value.type = None
    try:
        yield
    finally:
        for value, type_, shape in cleared:
            value.type = type_
            value.shape = shape


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedModel:
    path: Path
    size_bytes: int
    external_data: Path | None


def weight_bytes(model: ir.Model) -> int:
    """Total bytes of initializers across all graphs (without loading lazy tensors)."""
    total = 0
    for graph in model.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            if tensor is not None:
                total += tensor.nbytes
    return total


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def verify_model_file(path: Path, feed: Mapping[str, np.ndarray] | None = None) -> None:
    """Raise VerificationError unless ``path`` passes onnx.checker and loads in ONNX Runtime.

    With ``feed``, the session is the one users get (all graph optimisations) and must also run
    ``feed``: fusions that fail only at run time are caught before the file takes its name.
    """
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # noqa: BLE001
        raise VerificationError(f"output model fails the ONNX checker: {str(exc).splitlines()[0]}") from exc
    options = ort.SessionOptions()
    if feed is None:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4  # fatal only: ORT's errors come back as exceptions (our one line)
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise VerificationError(
            f"output model does not load in ONNX Runtime: {str(exc).strip().splitlines()[0]}"
        ) from exc
    if feed is not None:
        try:
            session.run(None, dict(feed))
        except Exception as exc:  # noqa: BLE001
            raise VerificationError(
                f"output model does not run in ONNX Runtime: {str(exc).strip().splitlines()[0]}"
            ) from exc


def input_files(source: str | os.PathLike) -> list[Path]:
    """Every file the model at ``source`` is made of: the ``.onnx`` file and its external-data files."""
    path = Path(source)
    files = [path]
    with contextlib.suppress(ModelcrunchError):  # an unreadable input fails on its own
        files += external_data_files(_read_proto(path), path.parent)
    return files


def refuse_input(dest: Path, source: Path, what: str, *, hint: bool = True) -> None:
    """Raise unless ``dest`` is none of the files the model at ``source`` is made of (``hint``: say
    that --overwrite-input allows the model file itself)."""
    for part in input_files(source):
        if _same_file(dest, part) or dest.resolve() == part.resolve():
            role = "the input model" if part == source else f"the input model's external data ({part.name})"
            raise ModelcrunchError(
                f"{dest}: refusing to overwrite {role} with the {what}; choose another output path"
                + (" (or pass --overwrite-input)" if part == source and hint else "")
            )


def _os_error(dest: Path, exc: OSError) -> ModelcrunchError:
    reason = exc.strerror or str(exc)
    return ModelcrunchError(f"{dest}: cannot write the output model ({reason})")


class StagedModel:
    """A verified model written beside its destination under a temporary name, not yet in place.

    ``commit()`` moves it into place (atomic rename); ``discard()`` (also run when the object is
    collected or the process exits) removes it. Pipelines stage, measure the staged file, and
    commit last: a later error or Ctrl-C leaves the destination as it was.
    """

    def __init__(self, dest: Path, tmp_dir: Path, data_name: str | None) -> None:
        self.dest = dest
        self.path = tmp_dir / dest.name
        self._tmp_dir = tmp_dir
        self._data_name = data_name
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(tmp_dir), True)

    @property
    def size_bytes(self) -> int:
        data = self._tmp_dir / self._data_name if self._data_name else None
        return self.path.stat().st_size + (data.stat().st_size if data else 0)

    def commit(self) -> SavedModel:
        size = self.size_bytes
        data_path = self.dest.parent / self._data_name if self._data_name else None
        try:
            if data_path is not None:
                os.replace(self._tmp_dir / self._data_name, data_path)
            os.replace(self.path, self.dest)
        except OSError as exc:
            raise _os_error(self.dest, exc) from exc
        finally:
            self.discard()
        return SavedModel(self.dest, size, data_path)

    def discard(self) -> None:
        self._finalizer()


def stage_model(
    model: ir.Model,
    path: str | os.PathLike,
    *,
    source: str | os.PathLike | None = None,
    overwrite_input: bool = False,
    external_data: bool | None = None,
    verify: bool = True,
    run_feed: Mapping[str, np.ndarray] | None = None,
) -> StagedModel:
    """Write and verify ``model`` beside ``path`` without taking its name (see ``save_model``)."""
    dest = Path(path)
    try:
        if source is not None:
            source = Path(source)
            if not overwrite_input:
                refuse_input(dest, source, "output model")
        if dest.is_dir():
            raise ModelcrunchError(f"{dest}: is a folder; give a file path for the output model")
        if dest.exists() and not dest.is_file():
            raise ModelcrunchError(f"{dest}: exists and is not a regular file (a FIFO or device?)")
        if external_data is None:
            external_data = weight_bytes(model) > EXTERNAL_DATA_THRESHOLD_BYTES
        data_name = dest.name + ".data" if external_data else None
        if (
            data_name is not None
            and source is not None
            and not (overwrite_input and _same_file(dest, source))
        ):
            refuse_input(dest.parent / data_name, source, "output's external data")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=".mc.", suffix=".tmp", dir=dest.parent))
    except OSError as exc:
        raise _os_error(dest, exc) from exc
    staged = StagedModel(dest, tmp_dir, data_name)
    try:
        if data_name is None:
            # Weights still memory-mapped from the source's external data must be inlined.
            ir.external_data.load_to_model(model)
        try:
            with _as_annotated_on_load(model):
                ir.save(model, staged.path, external_data=data_name)
        except OSError as exc:
            raise _os_error(dest, exc) from exc
        except (ValueError, TypeError) as exc:
            raise VerificationError(f"cannot serialise the model: {exc}") from exc
        if verify:
            verify_model_file(staged.path, run_feed)
    except BaseException:
        staged.discard()
        raise
    return staged


def save_model(
    model: ir.Model,
    path: str | os.PathLike,
    *,
    source: str | os.PathLike | None = None,
    overwrite_input: bool = False,
    external_data: bool | None = None,
    verify: bool = True,
    run_feed: Mapping[str, np.ndarray] | None = None,
) -> SavedModel:
    """Write ``model`` to ``path`` atomically and verify it before it takes the destination's name.

    Args:
        source: the input model's path; writing over it is refused unless ``overwrite_input``, and
            writing over one of its external-data files is always refused.
        external_data: True to store weights in ``<name>.data`` beside the model; None decides
            automatically (external when the weights exceed protobuf's 2 GB limit).
        verify: run onnx.checker and create an ONNX Runtime session on the written file.
        run_feed: inputs the verified session must also run (see ``verify_model_file``).
    """
    return stage_model(
        model,
        path,
        source=source,
        overwrite_input=overwrite_input,
        external_data=external_data,
        verify=verify,
        run_feed=run_feed,
    ).commit()
