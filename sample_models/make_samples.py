"""Train and export the bundled sample models of modelcrunch.

Writes, next to this file:
  mlp.onnx, cnn.onnx, transformer.onnx          (ONNX opset 17, dynamic batch dim "batch", float32 weights)
  <model>_digits_test.npz                       (held-out test split, arrays keyed by input name + `label`)
  <model>_digits_calib.npz                      (200 samples of the training split, same keys)

Data: scikit-learn's bundled 8x8 digits (1797 images, pixel values 0..16, 10 classes), split 80/20
stratified with a fixed seed. Float models see pixels / 16; the transformer sees the raw pixel value as a
token id (0..16) with a CLS token (id 17) prepended.

Dev-only dependencies: torch, scikit-learn (`pip install torch scikit-learn`).
Run: `python sample_models/make_samples.py` (a few minutes on 2 CPU cores). Deterministic: fixed seeds,
single-process data handling, deterministic torch algorithms.
"""

from __future__ import annotations

import collections
import math
import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

OUT = Path(__file__).resolve().parent
OPSET = 17
SEED = 0
N_CALIB = 200
CLS_ID = 17
VOCAB = 18
SEQ = 65


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------- data


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_train, x_test, y_train, y_test); x as uint8-valued int64 pixels [N, 64] in 0..16."""
    digits = load_digits()
    x = digits.data.astype(np.int64)  # [1797, 64], values 0..16
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, stratify=y, random_state=SEED)


def to_mlp(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32) / 16.0).reshape(-1, 64)


def to_cnn(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)


def to_tokens(x: np.ndarray) -> np.ndarray:
    cls = np.full((x.shape[0], 1), CLS_ID, dtype=np.int64)
    return np.concatenate([cls, x.astype(np.int64)], axis=1)  # [N, 65]


def shift_augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random +-1 pixel translation of [N, 64] images (zero fill). Used for training only."""
    imgs = x.reshape(-1, 8, 8)
    out = np.zeros_like(imgs)
    dy = rng.integers(-1, 2, size=len(imgs))
    dx = rng.integers(-1, 2, size=len(imgs))
    for i, (a, b) in enumerate(zip(dy, dx, strict=True)):
        src = imgs[i, max(0, -a) : 8 - max(0, a), max(0, -b) : 8 - max(0, b)]
        out[i, max(0, a) : 8 - max(0, -a), max(0, b) : 8 - max(0, -b)] = src
    return out.reshape(-1, 64)


# --------------------------------------------------------------------------------------------- models


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def conv_bn(cin: int, cout: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)


class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(1, 64)
        self.res_conv1, self.res_bn1 = conv_bn(64, 64)
        self.res_conv2, self.res_bn2 = conv_bn(64, 64)
        self.conv2, self.bn2 = conv_bn(64, 128)
        self.conv3, self.bn3 = conv_bn(128, 128)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(128 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        r = F.relu(self.res_bn1(self.res_conv1(x)))
        r = self.res_bn2(self.res_conv2(r))
        x = F.relu(x + r)
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x = self.pool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.h, self.dh = heads, d // heads
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)

    def split(self, t: torch.Tensor) -> torch.Tensor:  # [B, T, d] -> [B, h, T, dh]
        return t.reshape(-1, SEQ, self.h, self.dh).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        att = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.dh))
        att = torch.softmax(att, dim=-1)
        y = torch.matmul(att, v)  # [B, h, T, dh]
        y = y.transpose(1, 2).reshape(-1, SEQ, self.h * self.dh)
        return self.o(y)


class EncoderLayer(nn.Module):
    """Pre-LayerNorm encoder layer: x + Attn(LN(x)); x + FFN(LN(x)), FFN = Linear-GELU(erf)-Linear."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.ln2 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, ff)
        self.ff2 = nn.Linear(ff, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        x = x + self.drop(self.ff2(self.drop(F.gelu(self.ff1(self.ln2(x))))))
        return x


class Transformer(nn.Module):
    def __init__(self, d: int = 128, heads: int = 4, ff: int = 512, layers: int = 2, dropout: float = 0.1):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, d)
        self.pos = nn.Parameter(torch.randn(1, SEQ, d) * 0.02)
        self.layers = nn.ModuleList(EncoderLayer(d, heads, ff, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)
        self.drop = nn.Dropout(dropout)
        self._structured_init(d)

    @torch.no_grad()
    def _structured_init(self, d: int) -> None:
        """Give training a head start (weights stay fully learned afterwards):
        token embedding ~ linear in the pixel intensity (id/16 * u + small noise; CLS random) and positional
        embedding = 2-D sin/cos of (row, col). With plain random init the categorical pixel tokens train far
        slower on 1,437 images (about 60% test accuracy after 60 epochs)."""
        u = torch.randn(d)
        vals = torch.arange(VOCAB, dtype=torch.float32) / 16.0
        self.tok.weight.copy_(0.5 * vals[:, None] * u[None] + 0.1 * torch.randn(VOCAB, d))
        self.tok.weight[CLS_ID] = 0.5 * torch.randn(d)
        q = d // 4
        freq = torch.exp(-math.log(100.0) * torch.arange(q, dtype=torch.float32) / q)
        row = (torch.arange(64) // 8).float()[:, None] * freq
        col = (torch.arange(64) % 8).float()[:, None] * freq
        pos = torch.zeros(SEQ, d)  # position 0 (CLS) starts at zero
        pos[1:] = torch.cat([row.sin(), row.cos(), col.sin(), col.cos()], dim=1)
        self.pos.copy_(0.5 * pos[None])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.tok(ids) + self.pos)
        for layer in self.layers:
            x = layer(x)
        cls = self.ln_f(x[:, 0])
        return self.head(cls)


# ------------------------------------------------------------------------------------------- training


def train(
    model: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    make_input,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch: int,
    augment: bool,
    seed: int,
) -> None:
    """AdamW + cosine schedule with short linear warmup.

    `make_input` maps raw pixel rows to a torch tensor."""
    seed_all(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / batch)
    total = epochs * steps_per_epoch
    warm = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm))),
    )
    y_all = torch.from_numpy(y_train)
    model.train()
    for _ in range(epochs):
        perm = rng.permutation(len(x_train))
        xs = shift_augment(x_train, rng) if augment else x_train
        for i in range(0, len(perm), batch):
            idx = perm[i : i + batch]
            loss = F.cross_entropy(model(make_input(xs[idx])), y_all[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


# ----------------------------------------------------------------------------------- export / checks


def export(model: nn.Module, example: torch.Tensor, input_name: str, path: Path) -> None:
    """TorchScript-based exporter. TrainingMode.PRESERVE on an eval() model exports inference-mode
    BatchNormalization *without* the EVAL-only Conv+BN fusion peephole, so pruning passes see BN nodes."""
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[input_name],
            output_names=["logits"],
            dynamic_axes={input_name: {0: "batch"}, "logits": {0: "batch"}},
            training=torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=True,
            export_params=True,
            keep_initializers_as_inputs=False,
        )
    m = tidy(onnx.load(str(path)))
    m.producer_name = "modelcrunch-sample_models"
    m.doc_string = f"modelcrunch sample model {path.stem} (sklearn digits); see sample_models/README.md"
    onnx.save(m, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def tidy(m: onnx.ModelProto) -> onnx.ModelProto:
    """Cosmetic clean-up of the exporter output (no numerical change):
    - Constant nodes (Reshape shapes, scalar factors) become initializers, so every constant is one;
    - exporter-named weights (`onnx::MatMul_139`, the [in, out] transposed nn.Linear weight feeding a
      MatMul) are renamed after their module: `layers.0.attn.q.weight_t`."""
    g = m.graph
    keep = []
    for node in g.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(node.attribute[0].t)
            t.name = node.output[0]
            g.initializer.append(t)
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    rename = {}
    for init in g.initializer:
        if init.name.startswith("onnx::"):
            users = [n for n in g.node if init.name in n.input]
            if len(users) == 1 and users[0].op_type == "MatMul" and users[0].name.startswith("/"):
                module = ".".join(users[0].name.strip("/").split("/")[:-1])
                rename[init.name] = f"{module}.weight_t"
    for init in g.initializer:
        init.name = rename.get(init.name, init.name)
    for node in g.node:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
    return m


def ort_logits(path: Path, input_name: str, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {input_name: x})[0]


def finish(
    name: str,
    model: nn.Module,
    input_name: str,
    x_test: np.ndarray,
    y_test: np.ndarray,
    x_calib: np.ndarray,
    y_calib: np.ndarray,
) -> dict:
    path = OUT / f"{name}.onnx"
    export(model, torch.from_numpy(x_test[:2]), input_name, path)
    with torch.no_grad():
        ref = model(torch.from_numpy(x_test)).numpy()
    got = ort_logits(path, input_name, x_test)
    diff = float(np.abs(ref - got).max())
    if diff >= 1e-4:
        raise SystemExit(f"{name}: torch vs ORT max abs diff {diff:.3g} >= 1e-4")
    # Also exercise a different batch size (dynamic batch dim).
    got1 = ort_logits(path, input_name, x_test[:1])
    diff = max(diff, float(np.abs(ref[:1] - got1).max()))
    acc = float((got.argmax(1) == y_test).mean())
    np.savez_compressed(OUT / f"{name}_digits_test.npz", **{input_name: x_test, "label": y_test})
    np.savez_compressed(OUT / f"{name}_digits_calib.npz", **{input_name: x_calib, "label": y_calib})
    params = sum(p.numel() for p in model.parameters())
    ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    info = dict(name=name, acc=acc, diff=diff, params=params, bytes=path.stat().st_size, ops=dict(ops))
    print(
        f"{name}: ORT test acc {acc:.4f} ({len(y_test)} samples), torch-vs-ORT max|diff| {diff:.2e}, "
        f"params {params:,}, {path.stat().st_size / 1e6:.2f} MB\n  ops: {dict(sorted(ops.items()))}",
        flush=True,
    )
    return info


def main() -> int:
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    seed_all(SEED)
    x_train, x_test, y_train, y_test = load_split()
    calib_idx = np.sort(np.random.default_rng(SEED).choice(len(x_train), N_CALIB, replace=False))
    x_cal, y_cal = x_train[calib_idx], y_train[calib_idx]
    print(f"digits: train {len(x_train)}, test {len(x_test)}, calib {N_CALIB} (from train)", flush=True)

    results = []

    t0 = time.time()
    torch.manual_seed(SEED)
    mlp = MLP()
    train(
        mlp,
        x_train,
        y_train,
        lambda a: torch.from_numpy(to_mlp(a)),
        epochs=60,
        lr=2e-3,
        weight_decay=1e-2,
        batch=64,
        augment=True,
        seed=SEED,
    )
    results.append(finish("mlp", mlp, "input", to_mlp(x_test), y_test, to_mlp(x_cal), y_cal))
    print(f"  ({time.time() - t0:.0f}s)", flush=True)

    t0 = time.time()
    torch.manual_seed(SEED)
    cnn = CNN()
    train(
        cnn,
        x_train,
        y_train,
        lambda a: torch.from_numpy(to_cnn(a)),
        epochs=15,
        lr=2e-3,
        weight_decay=5e-2,
        batch=64,
        augment=True,
        seed=SEED,
    )
    results.append(finish("cnn", cnn, "input", to_cnn(x_test), y_test, to_cnn(x_cal), y_cal))
    print(f"  ({time.time() - t0:.0f}s)", flush=True)

    t0 = time.time()
    torch.manual_seed(SEED)
    tfm = Transformer()
    # No shift augmentation here: tokens are bound to learned positions, and shifted copies slow it badly.
    train(
        tfm,
        x_train,
        y_train,
        lambda a: torch.from_numpy(to_tokens(a)),
        epochs=30,
        lr=3e-3,
        weight_decay=5e-2,
        batch=32,
        augment=False,
        seed=SEED,
    )
    results.append(
        finish("transformer", tfm, "input_ids", to_tokens(x_test), y_test, to_tokens(x_cal), y_cal)
    )
    print(f"  ({time.time() - t0:.0f}s)", flush=True)

    ok = all(r["acc"] >= 0.9 for r in results)
    print("all models >= 90% ORT test accuracy" if ok else "WARNING: a model is below 90% test accuracy")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
