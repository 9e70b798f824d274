"""Which channel multiples pay for Conv on this CPU's ONNX Runtime (the default of ``prune --round-to``).

    python benchmarks/bench_round_to.py [--spatial 40] [--rounds 15]

Times a 3x3 Conv -> Relu -> 3x3 Conv block (``C -> C -> C``, ``[1, C, S, S]``) for every channel
count ``C`` from 33 to 64, interleaved round-robin (one run of each model per round, the fastest run over
rounds), and prints each count's latency per channel relative to ``C = 64``. ORT's CPU provider
runs Conv in its blocked NCHWc layout only when the channel counts are multiples of the block
(16 with AVX-512, 8 with AVX2): counts off the block fall back to the plain kernels.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def block(channels: int, spatial: int) -> bytes:
    rng = np.random.default_rng(channels)
    inits, nodes, x = [], [], "x"
    for i in range(2):
        w = numpy_helper.from_array(
            rng.standard_normal((channels, channels, 3, 3)).astype(np.float32), f"w{i}"
        )
        inits.append(w)
        nodes.append(helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        x = f"r{i}"
    shape = [1, channels, spatial, spatial]
    graph = helper.make_graph(
        nodes,
        "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spatial", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    counts = list(range(33, 65))
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions, feeds = {}, {}
    for c in counts:
        sessions[c] = ort.InferenceSession(
            block(c, args.spatial), options, providers=["CPUExecutionProvider"]
        )
        feeds[c] = {
            "x": np.random.default_rng(0).standard_normal((1, c, args.spatial, args.spatial), np.float32)
        }
        for _ in range(3):
            sessions[c].run(None, feeds[c])
    times: dict[int, list[float]] = {c: [] for c in counts}
    for _ in range(args.rounds):
        for c in counts:
            start = time.perf_counter()
            sessions[c].run(None, feeds[c])
            times[c].append(time.perf_counter() - start)
    # the minimum: on a shared machine other processes only ever add time
    median = {c: min(t) * 1e3 for c, t in times.items()}
    print(f"ORT {ort.__version__}, spatial {args.spatial}, {args.threads} thread(s), {args.rounds} rounds")
    print("  C   ms    ms/C^2 vs C=64   multiple of")
    for c in counts:
        per = median[c] / c**2 / (median[64] / 64**2)
        tags = ",".join(str(m) for m in (16, 8, 4) if c % m == 0)
        print(f"{c:3d} {median[c]:6.3f}  {per:5.2f}x        {tags}")
    for m in (16, 8, 4, 1):
        picked = [median[c] / c**2 for c in counts if c % m == 0]
        print(f"multiples of {m:2d}: mean ms/C^2 {statistics.mean(picked) * 1e3:.3f} (x1e-3)")


if __name__ == "__main__":
    main()
