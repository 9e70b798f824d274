"""``quantize_model``: load, pre-process, build each candidate mode under the accuracy guard, bench
the candidates against the original interleaved (speed guard), keep one, save it verified, run it.

Nothing is written outside the run's ``tempfile.TemporaryDirectory`` except the output model,
which ``modelcrunch.io.save_model`` writes atomically after the checker and an ORT session accept it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from modelcrunch.errors import GateFailed, ModelcrunchError, VerificationError
from modelcrunch.io import load_model, model_size_bytes, save_model
from modelcrunch.passes._ir import annotated_names, drop_shape_annotations, name_nodes
from modelcrunch.passes.quantize import auto, bias_correction
from modelcrunch.passes.quantize.builders import (
    HALF_MODES,
    Workspace,
    compact_copy,
    half_keep_reasons,
    mode_build,
    nonfinite_outputs,
    per_token_nodes,
)
from modelcrunch.passes.quantize.calibration import (
    Feeds,
    OutputRecord,
    batched,
    feed_key,
    load_feeds,
    stacked_parts,
)
from modelcrunch.passes.quantize.channels import worst_channel_error
from modelcrunch.passes.quantize.config import DYNAMIC_OP_TYPES, Mode, QuantizeOptions
from modelcrunch.passes.quantize.existing import find_existing, restrict_options, unchanged_report
from modelcrunch.passes.quantize.report import (
    Candidate,
    ExcludedNode,
    QuantizeReport,
    op_delta,
    still_float,
    weighted_nodes,
)  # fmt: skip
from modelcrunch.passes.quantize.sensitivity import (
    Build,
    GuardResult,
    Score,
    cached,
    float_limit,
    guard,
    keep_worst_float,
    search_count,
)
from modelcrunch.passes.quantize.storage import MIN_ELEMENTS, MIN_WEIGHT_ELEMENTS
from modelcrunch.passes.quantize.targets import (
    check_kinds,
    check_targets,
    measured_text,
    meets,
    target_text,
)
from modelcrunch.runtime.fidelity import Fidelity, compare_outputs, finite_or_none
from modelcrunch.runtime.judge import Judge, Verdict, load_metric
from modelcrunch.runtime.session import ALTERNATING, make_session

logger = logging.getLogger(__name__)

PROBE_SAMPLES = 16
CHANNEL_SAMPLES = 64
#: The count search of the sensitivity guard reads this many samples; its answer is then confirmed
#: on all of them (``sensitivity.search_count``).
SEARCH_SAMPLES = 32
BENCH_FEEDS = 4
MEMO_BYTES = 256 << 20
Progress = Callable[[str, int, int], None] | None


@dataclass(frozen=True)
class _Built:
    mode: Mode
    path: Path
    fidelity: Fidelity
    channel_error: float
    excluded: dict[str, str]
    met: bool
    notes: list[str]
    per_token: frozenset[str] = frozenset()  # sensitive MatMuls given per-token int8, not float
    verdict: Verdict | None = None


class _Memo:
    """A session that runs each feed once: outputs are kept by the identity of the feed's arrays.

    The reference model's outputs are computed once per run and replayed for every candidate, and
    a candidate's outputs serve both the fidelity and the channel-error measurement. Only for
    feeds whose arrays stay alive (the judge's lists). Memory: at most ``MEMO_BYTES`` of outputs;
    feeds beyond that are simply run again.
    """

    def __init__(
        self, session: ort.InferenceSession, recorded: Callable[[dict], list | None] | None = None
    ) -> None:
        self._session = session
        self._recorded = recorded  # outputs computed elsewhere, asked before running
        self._outputs: dict[tuple, list] = {}
        self._bytes = 0

    def get_inputs(self):  # noqa: ANN201
        return self._session.get_inputs()

    def get_outputs(self):  # noqa: ANN201
        return self._session.get_outputs()

    def run(self, output_names, input_feed, run_options=None) -> list:  # noqa: ANN001
        key = feed_key(input_feed)
        if output_names is not None or run_options is not None:
            return self._session.run(output_names, input_feed, run_options)
        if key in self._outputs:
            return self._outputs[key]
        outputs = self._recorded(input_feed) if self._recorded is not None else None
        if outputs is None:
            outputs = self._session.run(None, input_feed)
        size = sum(getattr(o, "nbytes", 0) for o in outputs)
        if self._bytes + size <= MEMO_BYTES:
            self._outputs[key] = outputs
            self._bytes += size
        return outputs


class _Recorded:
    """The reference outputs of the evaluation feeds, taken from the calibration run
    (``calibration.OutputRecord``) where every sample of a feed was calibrated, concatenated for a
    stacked feed. That run is of the pre-processed model (exact fusions, on the CPU provider), so
    the first sample found is run on the original as well, and the record is trusted only if the
    two agree (``RECORD_REL_L2``); else every feed is run. Saves all but one of the reference's
    runs (magika: 64 runs, 0.22 s, in a 0.85 s quantization).
    """

    def __init__(
        self, session: ort.InferenceSession, record: OutputRecord, chunks: Mapping[tuple, Sequence[dict]]
    ) -> None:
        self._session = session
        self._record = record
        self._chunks = chunks  # feed_key(feed) -> the one-sample feeds stacked into it
        self.trusted: bool | None = None

    def __call__(self, feed: dict) -> list | None:
        chunk = self._chunks.get(feed_key(feed))
        parts = None if self.trusted is False or chunk is None else self._record.take(chunk)
        if parts is None:
            return None
        if self.trusted is None:
            self.trusted = _agree(self._session.run(None, chunk[0]), parts[0])
            if not self.trusted:
                logger.info("the calibration run's outputs differ from the original's: not reused")
                return None
        return [o[0] if len(o) == 1 else np.concatenate(o) for o in zip(*parts, strict=True)]


#: How far (relative L2, per output) the pre-processed model's outputs may be from the original's
#: for the calibration run's outputs to stand in for the reference's: float rounding, not change.
#: (Magika's outputs for 32 samples stacked are 2e-4 from its one-at-a-time ones; its optimised and
#: pre-processed model's 2e-7 apart.)
RECORD_REL_L2 = 1e-3


def _agree(reference: list, recorded: list) -> bool:
    for r, c in zip(reference, recorded, strict=True):
        r, c = np.asarray(r), np.asarray(c)
        if r.shape != c.shape or r.dtype != c.dtype:
            return False
        if not np.issubdtype(r.dtype, np.floating):
            if not np.array_equal(r, c):
                return False
            continue
        r64, c64 = r.astype(np.float64), c.astype(np.float64)
        if not np.all(np.isfinite(r64) == np.isfinite(c64)):
            return False
        finite = np.isfinite(r64)
        if np.linalg.norm(r64[finite] - c64[finite]) > RECORD_REL_L2 * np.linalg.norm(r64[finite]) + 1e-12:
            return False
    return True


@dataclass(frozen=True)
class _Judge:
    """Fidelity measurement shared by every candidate of a run: the evaluation samples stacked
    into batches where the model allows it (``calibration.batched``), the reference run once."""

    reference: ort.InferenceSession
    feeds: list[dict]  # every evaluation sample; the probe and channel sets are prefixes of it
    size: int  # samples per feed
    samples: int  # evaluation samples in all
    labels: object
    options: QuantizeOptions
    task: Judge  # the task judge (output kinds, task figures, targets) on the same feeds

    @classmethod
    def create(
        cls,
        session: ort.InferenceSession,
        evaluation: Feeds,
        options: QuantizeOptions,
        record: OutputRecord | None = None,
        *,
        model: ir.Model,
        describe: str = "",
    ) -> _Judge:
        """``record``: the calibration run's outputs, where the evaluation samples are calibrated."""
        size = batched(session, evaluation.samples)
        feeds, chunks = stacked_parts(evaluation.samples, size)
        recorded = None if record is None else _Recorded(session, record, chunks)
        memo = _Memo(session, recorded)
        task = Judge(
            model,
            feeds,
            targets=options.targets,
            kinds=dict(options.output_kinds),
            metric=load_metric(options.metric) if options.metric else None,
            labels=evaluation.labels,
            session=memo,
            stack=False,
            describe=describe,
            infer_with=session,
        )
        return cls(memo, feeds, size, len(evaluation.samples), evaluation.labels, options, task)

    def probabilities(self) -> bool:
        """Whether some reference output on the first feed is a probability output (has a mask IoU);
        the run is memoized, so the fidelity measurement reuses it."""
        outputs = self.reference.run(None, self.feeds[0])
        return compare_outputs(outputs, outputs).worst_mask_iou_of(None) is not None

    def _prefix(self, samples: int) -> list[dict]:
        return self.feeds[: max(1, math.ceil(samples / self.size))]

    def score(self, path: Path, *, probe: bool = False, samples: int | None = None) -> Score:
        """Fidelity and channel error of ``path`` on every sample, the first ``samples``, or the probe
        prefix; the gates switched on also rank layers (``Score.loss``)."""
        candidate = _Memo(
            make_session(
                path, provider=self.options.provider, threads=self.options.threads, config=ALTERNATING
            )
        )
        samples = PROBE_SAMPLES if probe else samples
        verdict = self.task(candidate, samples=samples)
        fidelity = verdict.fidelity
        channel = worst_channel_error(
            self.reference, candidate, self._prefix(min(samples or CHANNEL_SAMPLES, CHANNEL_SAMPLES))
        )
        options = self.options
        return Score(
            fidelity,
            channel,
            channel_weight=0.0 if options.max_channel_error is None else 0.01,
            top1_weight=0.0 if options.min_top1_agreement is None else 1.0,
            top1_outputs=options.top1_outputs,
            mask_weight=0.0 if options.min_mask_iou is None else 1.0,
            mask_outputs=options.mask_outputs,
            verdict=verdict,
        )


def _build_mode(ws: Workspace, mode: Mode, judge: _Judge, on_progress: Progress) -> _Built:
    options = ws.options
    spec = mode_build(ws, mode)

    def measure(path: Path) -> Score:
        return judge.score(path, probe=False)

    def probe(path: Path) -> Score:
        return judge.score(path, probe=True)

    def subset(path: Path) -> Score:
        return judge.score(path, samples=SEARCH_SAMPLES)

    user = list(options.exclude)
    kept = {n: reason for n, reason in spec.kept.items() if n not in set(user)}
    fixed = [*user, *kept]
    layers = [n for n in spec.layers if n not in set(fixed)] if options.sensitivity else []
    cheaper = subset if judge.samples > SEARCH_SAMPLES * 3 // 2 else None
    search = _Search(spec.build, measure, lambda f: meets(options, f), fixed, target_text(options), cheaper)
    result = guard(
        layers,
        search.build,
        search.measure,
        probe,
        search.meets,
        base_exclude=search.fixed,
        target=search.target,
        on_progress=on_progress,
        search=search.subset,
    )
    notes = list(spec.notes)
    if spec.compactable and options.compact:
        result = _compact(ws, result, search, user, notes)
    if spec.float_source is not None and options.bias_correction and not ws.calibration.synthetic:
        result = _bias_corrected(ws, spec.float_source, result, search, notes)
    met = result.met
    per_token = per_token_nodes(result.path) if mode is Mode.DYNAMIC and options.per_token else set()
    if per_token:
        notes.append(f"{len(per_token)} sensitive MatMuls use per-token int8 activations instead of float")
    if mode in HALF_MODES:
        bad = nonfinite_outputs(result.path, ws.calibration.samples)
        if bad:
            notes.append(f"{mode.value} gives NaN/inf on {bad} calibration samples")
            met = False
    if result.excluded and len(set(result.excluded) - per_token) >= len(layers):
        notes.append("every layer had to stay float to meet the target")
        met = False
    excluded = {name: "excluded by --exclude" for name in user} | kept | result.excluded
    if mode in HALF_MODES:
        excluded = half_keep_reasons(ws, mode, frozenset(excluded)) | excluded
    return _Built(
        mode, result.path, result.score.fidelity, result.score.channel_error, excluded, met, notes,
        frozenset(per_token), result.score.verdict,
    )  # fmt: skip


@dataclass(frozen=True)
class _Search:
    """What the sensitivity analysis searched with, for ``_compact`` to search on."""

    build: Build
    measure: Callable[[Path], Score]
    meets: Callable[[Score], bool]
    fixed: list[str]  # kept float by the user and the rules
    target: str
    subset: Callable[[Path], Score] | None = None  # the count search's cheaper measurement


def _compact(
    ws: Workspace, result: GuardResult, search: _Search, user: list[str], notes: list[str]
) -> GuardResult:
    """``--compact`` for the layers the sensitivity analysis kept float: their weights too are
    stored as int8 (``compact_copy``) where the result still meets the target. (Every other float
    weight was already, in the candidate the analysis measured.) The user's --exclude stay exact.

    When the analysis's result meets the target with no margin, int8 weights for its float layers
    miss it: then more of the worst layers are kept float, all stored as int8, as few more as meet
    the target (``search_count`` over the same ranking). That trades a little speed for size,
    the point of quantizing; if no count meets it, the float layers keep their exact weights."""
    if not result.excluded or not result.met:
        return result
    path = compact_copy(ws, result.path, user)
    if path is None:
        return result
    score = search.measure(path)
    if search.meets(score):
        notes.append("--compact: the weights of the layers kept float are stored as int8 too")
        return replace(result, path=path, score=score)

    @cached
    def compacted(only: Sequence[str] | None, exclude: Sequence[str]) -> Path:
        built = search.build(only, exclude)
        return compact_copy(ws, built, user) or built

    def attempt(extra: int, how: Callable[[Path], Score]) -> GuardResult:
        return keep_worst_float(
            result.ranking, result.floats + extra, compacted, how, search.meets,
            base_exclude=search.fixed, target=search.target,
        )  # fmt: skip

    more = float_limit(result.ranking) - result.floats
    found = search_count(more, attempt, search.measure, search.subset) if more > 0 else None
    if found is None or not found.met:
        notes.append(
            "--compact: the weights of the layers kept float stay exact (int8 storage missed the target)"
        )
        return result
    extra = found.floats - result.floats
    notes.append(
        f"--compact: the weights of the layers kept float are stored as int8 too; {extra} more "
        f"sensitive group{'s' * (extra > 1)} kept float to meet the target with them"
    )
    return found


def _bias_corrected(
    ws: Workspace, source: Path, result: GuardResult, search: _Search, notes: list[str]
) -> GuardResult:
    """``result`` with its int8 layers' biases corrected (``bias_correction``), where the task
    verdict on the held-out samples is no worse; else ``result`` as it is (``notes`` says which)."""
    try:
        means = bias_correction.input_means(source, ws.calibration.samples)
        out = ws.new_path("bias")
        corrected = bias_correction.correct(result.path, source, means, out)
    except Exception as exc:  # noqa: BLE001 - an accuracy nicety: the uncorrected model stands
        logger.info("bias correction failed: %s", exc)
        return result
    if not corrected:
        return result
    score = search.measure(out)
    before, after = result.score.describe(), score.describe()
    if score.loss <= result.score.loss and (search.meets(score) or not result.met):
        notes.append(f"bias correction of {len(corrected)} int8 layers: {before} -> {after}")
        return replace(result, path=out, score=score, met=search.meets(score))
    notes.append(f"bias correction of {len(corrected)} int8 layers not kept ({after}; without: {before})")
    return result


def _excluded_nodes(
    before: onnx.ModelProto, after: onnx.ModelProto, built: _Built
) -> tuple[list[str], list[ExcludedNode]]:
    floats = still_float(after)
    quantized, excluded = [], []
    for name, op_type, owner in weighted_nodes(before):
        if name in built.per_token:
            quantized.append(name)
        elif name in built.excluded:
            excluded.append(ExcludedNode(name, op_type, built.excluded[name]))
        elif name in floats and owner is not None and built.mode not in SUBGRAPH_MODES:
            excluded.append(
                ExcludedNode(
                    name,
                    op_type,
                    f"inside the subgraph of {owner}: ONNX Runtime's "
                    f"{built.mode.value} tool does not quantize subgraphs; left float",
                )
            )
        elif name in floats:
            excluded.append(ExcludedNode(name, op_type, _why_float(built.mode, op_type)))
        else:
            quantized.append(name)
    listed = {n.name for n in excluded} | built.per_token
    op_types = {node.name: node.op_type for node in before.graph.node}
    excluded += [
        ExcludedNode(name, op_types.get(name, "?"), reason)
        for name, reason in built.excluded.items()
        if name not in listed
    ]
    return quantized, excluded


#: Modes that quantize inside If/Loop bodies too (``storage.py``; ORT's ``quantize_dynamic``): a
#: float node there is float for the same reasons as in the main graph.
SUBGRAPH_MODES = frozenset({Mode.STORAGE, Mode.DYNAMIC})


def _why_float(mode: Mode, op_type: str) -> str:
    if mode is Mode.STORAGE:
        return (
            f"weight under {MIN_WEIGHT_ELEMENTS} elements (other tensors {MIN_ELEMENTS}) or shared with a "
            "graph input/output: kept float"
        )
    if mode is Mode.WEIGHT_ONLY:
        return f"{op_type} has no MatMulNBits form (only MatMul, and 4-bit embedding Gather)"
    if mode is Mode.DYNAMIC and op_type not in DYNAMIC_OP_TYPES:
        return f"{op_type} is not quantized dynamically (no fast integer kernel on CPU)"
    return f"left float by ONNX Runtime's {mode.value} quantizer (unsupported weight layout or op)"


@contextlib.contextmanager
def _quiet_ort_logging():
    """ORT's quantization tools log alarming warnings for situations we handle; keep them at INFO.
    Some also ``print`` (the histogram calibrators' progress): that goes to the debug log, since
    stdout carries ``--json``."""
    loggers = [logging.getLogger(n) for n in ("onnxruntime.quantization", "root")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.ERROR))
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if printed.getvalue():
            logger.debug("ONNX Runtime printed: %s", printed.getvalue().strip())


def _latency_ratios(
    reference: Path, built: list[_Built], evals: Feeds, options: QuantizeOptions, on_progress: Progress
) -> tuple[list[float | None], tuple[float, list[float]]]:
    """Latency ratio of each built candidate to the original, and the medians (ms), interleaved."""
    result = _bench(reference, [b.path for b in built], evals, options, on_progress)
    ratios: list[float | None] = [r.latency for r in result.ratios[1:]]
    return ratios, (result.models[0].latency.p50_ms, [m.latency.p50_ms for m in result.models[1:]])


def _faster_met(built: list[_Built], ratios: list[float | None]) -> bool:
    """Some candidate meets the target and is faster than the original (what ``auto.choose`` picks first)."""
    return any(
        b.met and ratio is not None and ratio < auto.FASTER_BELOW
        for b, ratio in zip(built, ratios, strict=True)
    )


def _bench(reference: Path, paths: list[Path], feeds: Feeds, options: QuantizeOptions, on_progress: Progress):
    from modelcrunch.runtime.bench import benchmark

    return benchmark(
        [reference, *paths],
        feeds.samples[:BENCH_FEEDS],
        provider=options.provider,
        threads=options.threads,
        warmup=5,
        runs=200,
        time_budget_s=options.bench_seconds,
        on_progress=on_progress,
    )


def quantize_model(
    source: Path,
    output: Path,
    options: QuantizeOptions,
    *,
    calibration: Path | None = None,
    evaluation: Path | None = None,
    overwrite_input: bool = False,
    shapes: Mapping[str, list[int | str]] | None = None,
    batch: int | None = None,
    reference_model: Path | None = None,
    on_progress: Progress = None,
) -> QuantizeReport:
    """Quantize ``source`` into ``output`` (see the module docstring); raises GateFailed on a missed gate."""
    started = time.perf_counter()
    if options.require_faster and not options.bench:
        raise ModelcrunchError("--require-faster needs the benchmark (drop --no-bench)")
    model = load_model(source)
    # quantization reads every weight, and its working copies live in a temporary folder: in memory
    ir.external_data.load_to_model(model)
    name_nodes(model)
    existing = find_existing(model)  # already quantized: never a second quantization (existing.py)
    if existing.quantized and not existing.floats:
        return unchanged_report(
            source, output, model, existing, options, overwrite_input=overwrite_input, started=started
        )
    if existing.quantized:
        options = restrict_options(options, existing)
    annotated = annotated_names(model)  # the source's own value_info survives; ours is dropped
    check_targets(options)
    warnings: list[str] = []
    if existing.quantized:
        warnings.append(f"{existing.note()}: only those are quantized (--mode {options.mode.value})")
    with tempfile.TemporaryDirectory(prefix="modelcrunch-quantize-") as tmp:
        work = Path(tmp)
        reference = work / "reference.onnx"
        ir.save(model, reference)
        session = make_session(
            reference, provider=options.provider, threads=options.threads, config=ALTERNATING
        )
        calib = load_feeds(
            calibration, session, limit=options.max_calibration_samples, shapes=shapes, batch=batch
        )
        held_out = evaluation is None and not calib.synthetic and options.holdout > 0 and len(calib) >= 2
        if evaluation is not None:
            evals = load_feeds(
                evaluation, session, limit=options.max_eval_samples, shapes=shapes, batch=batch
            )
            judged_on = f"{len(evals)} samples of --eval {evaluation}"
        elif held_out:
            calib, evals = calib.split(options.holdout)
            evals = evals.head(options.max_eval_samples)
            judged_on = (
                f"{len(evals)} held-out samples ({options.holdout:.0%} of --calibration, seed 0; "
                f"calibrated on the other {len(calib)})"
            )
        else:
            evals = calib.head(options.max_eval_samples)
            judged_on = f"{len(evals)} {'synthesized' if calib.synthetic else 'calibration'} samples"
        if calib.synthetic:
            warnings.append(
                "no --calibration data: ranges come from SYNTHESIZED random inputs and fidelity is "
                "measured on them too — ACCURACY ON REAL DATA IS UNKNOWN"
            )
        # without --eval the evaluation samples are calibration samples: their reference outputs
        # come from the calibration run, where a mode calibrates first (``_Recorded``)
        same_samples = evaluation is None and not held_out and reference_model is None
        record = OutputRecord([o.name for o in session.get_outputs()], MEMO_BYTES) if same_samples else None
        original, judge_session = model, session
        if reference_model is not None:  # judged against the true original, not this step's input
            original = load_model(reference_model)
            judge_session = make_session(original, provider=options.provider, threads=options.threads)
            judged_on += f", against --reference {reference_model}"
        judge = _Judge.create(judge_session, evals, options, record, model=original, describe=judged_on)
        check_kinds(options, judge.task.specs)
        # calibration may stack what the evaluation may (``static.calibrate`` times whether it pays)
        stack_size = judge.size if same_samples else batched(session, calib.samples)
        ws = Workspace(work, options, model, calib, record, stack_size)
        before = ir.to_proto(model)
        modes = auto.candidate_modes(before) if options.mode is Mode.AUTO else [options.mode]
        # the storage-only fall-back is only kept when no other candidate is faster: with the
        # benchmark on, it is built after the others have been timed, and only where it can win
        deferred = [m for m in modes if m is Mode.STORAGE and len(modes) > 1 and options.bench]
        built: list[_Built] = []

        def build(modes: list[Mode]) -> None:
            for mode in modes:
                try:
                    with _quiet_ort_logging():
                        built.append(_build_mode(ws, mode, judge, on_progress))
                except (GateFailed, KeyboardInterrupt, MemoryError):
                    raise
                except Exception as exc:  # noqa: BLE001 - ORT's tools fail in many ways on real models
                    if options.mode is not Mode.AUTO and isinstance(exc, ModelcrunchError):
                        raise
                    if options.mode is not Mode.AUTO:
                        raise VerificationError(
                            f"{mode.value} quantization failed: {type(exc).__name__}: {exc}"
                        ) from exc
                    logger.info("candidate %s failed: %s", mode.value, exc)  # reported in the warnings
                    warnings.append(f"candidate {mode.value} failed ({type(exc).__name__}: {str(exc)[:120]})")
                finally:
                    if record is not None:  # only the first mode's reference run can use it
                        record.clear()
                        ws.record = None

        build([m for m in modes if m not in deferred])
        ratios: list[float | None] = [None] * len(built)
        bench_ms: tuple[float, list[float]] | None = None
        if options.bench and built:
            ratios, bench_ms = _latency_ratios(reference, built, evals, options, on_progress)
        fall_back = bool(deferred) and not (built and _faster_met(built, ratios))
        if fall_back:
            build(deferred)
            if options.bench and built:
                ratios, bench_ms = _latency_ratios(reference, built, evals, options, on_progress)
        skipped = [f"{m.value}: not tried (a faster candidate met the target)" for m in deferred]
        skipped = [] if fall_back else skipped
        if not built:
            raise VerificationError("every candidate mode failed: " + "; ".join(warnings[-len(modes) :]))

        candidates = []
        protos = [onnx.load(str(b.path)) for b in built]
        nodes = [_excluded_nodes(before, proto, b) for b, proto in zip(built, protos, strict=True)]
        for b, (quantized, excluded), ratio in zip(built, nodes, ratios, strict=True):
            candidates.append(
                Candidate(
                    b.mode.value,
                    b.path.stat().st_size,
                    ratio,
                    b.fidelity.worst_cosine,
                    b.fidelity.accuracy_candidate,
                    b.met,
                    len(quantized),
                    len(excluded),
                    "; ".join(b.notes),
                    None if b.verdict is None else b.verdict.loss,
                    "" if b.verdict is None else b.verdict.summary(),
                )
            )
        if options.mode is Mode.AUTO:
            index, reason = auto.choose(candidates)
        else:
            index, reason = 0, "requested with --mode"
        chosen, chosen_proto = built[index], protos[index]
        quantized, excluded = nodes[index]
        ratio = ratios[index]
        latency = None
        if bench_ms is not None and ratio is not None:
            latency = {
                "original_ms": bench_ms[0],
                "quantized_ms": bench_ms[1][index],
                "ratio": ratio,
                "threads": options.threads,
                "batch": 1,
                "interleaved": True,
            }
            if ratio >= 1.0:
                warnings.append(f"the quantized model is SLOWER than the original ({ratio:.2f}x latency)")
        measured = measured_text(chosen.fidelity, chosen.channel_error, options, chosen.verdict)
        if not chosen.met:
            warnings.append(f"fidelity target NOT met ({target_text(options)}; {measured})")
        if options.require_faster and (ratio is None or ratio >= auto.FASTER_BELOW):
            raise GateFailed(
                f"--require-faster: the {chosen.mode.value} model is not faster than the original by "
                f"{1 - auto.FASTER_BELOW:.0%} "
                f"({'unmeasured' if ratio is None else f'{ratio:.2f}x'} latency); nothing written"
            )
        slow = options.mode is Mode.AUTO and not options.allow_slower and auto.too_slow(candidates[index])
        if slow:
            warnings.append(
                f"the chosen model is {ratio:.2f}x the original's latency: SLOWER (--allow-slower keeps it)"
            )
        passed = chosen.met and not slow
        if passed or options.keep_best:
            final = ir.serde.deserialize_model(chosen_proto)  # loaded above, external data included
            drop_shape_annotations(final, keep=annotated)
            saved = save_model(
                final, output, source=source, overwrite_input=overwrite_input, run_feed=evals.samples[0]
            )
            output_path, output_size = str(saved.path), saved.size_bytes
        else:
            output_path, output_size = None, chosen.path.stat().st_size
            warnings.append(f"nothing written to {output} (the target was missed; --keep-best writes it)")
        others = [
            f"{b.mode.value}: {n}" for b in built if b is not chosen for n in b.notes if n not in chosen.notes
        ]
        prep_notes = sorted(chosen.notes) + sorted(set(others)) + skipped  # the chosen model's first
    return QuantizeReport(
        model=str(source),
        output=output_path,
        mode=chosen.mode.value,
        mode_reason=reason,
        size_before=model_size_bytes(source),
        size_after=output_size,
        fidelity={**chosen.fidelity.to_dict(), "worst_channel_error": finite_or_none(chosen.channel_error)},
        latency=latency,
        nodes_quantized=quantized,
        nodes_excluded=excluded,
        op_counts=op_delta(before, chosen_proto),
        candidates=candidates,
        calibration={
            "source": calib.source,
            "samples": len(calib),
            "synthetic": calib.synthetic,
            "method": options.calibration_method.value,
        },
        evaluation={
            "source": evals.source,
            "samples": len(evals),
            "labels": evals.labels is not None,
            "held_out": held_out,
            "judged_on": judged_on,
        },
        verdict=None if chosen.verdict is None else chosen.verdict.to_dict(),
        target={
            "min_cosine": options.effective_min_cosine,
            "max_drop": options.max_drop,
            "max_channel_error": options.max_channel_error,
            "min_top1_agreement": options.min_top1_agreement,
            "top1_outputs": list(options.top1_outputs) if options.top1_outputs is not None else None,
            "min_mask_iou": options.min_mask_iou,
            "mask_outputs": list(options.mask_outputs) if options.mask_outputs is not None else None,
            "met": chosen.met,
            "slower": slow,
            "passed": passed,
            "task": chosen.verdict.summary() if chosen.verdict is not None else None,
        },
        preprocessing=prep_notes,
        warnings=warnings,
        seconds=time.perf_counter() - started,
    )
