"""A SentencePiece-style GGUF vocabulary (`tokenizer.ggml.model = llama`: Gemma 3) as a Hugging Face
`tokenizer.json`, read with numpy and `tokenizers` alone.

transformers' own GGUF conversion of Gemma 3's vocabulary splits words into pieces the model never
saw (" capital" → " c", "ap", "it", "al"); llama.cpp tokenizes by score: the adjacent pair whose
joined piece is in the vocabulary with the highest score merges first. That is BPE with every
such pair as a merge ranked by the joined piece's score, which this module writes out, with
byte fallback (`<0xNN>` pieces), spaces as "▁", and the control and user-defined pieces as
added tokens matched before BPE (control ones special).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_BYTE = 1, 3, 4, 6


def _array(reader, key: str) -> list:
    f = reader.fields[key]
    return [f.parts[i] for i in f.data]


def _scalar(reader, key: str, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.parts[f.data[0]][0].item()


def gguf_add_bos(reader) -> bool:
    """Whether the model expects every sequence to start with bos (`tokenizer.ggml.add_bos_token`:
    Gemma yes, SmolLM2 no)."""
    return bool(_scalar(reader, "tokenizer.ggml.add_bos_token", False))


def gguf_tokenizer(path: str | Path):
    """(tokenizers.Tokenizer, special ids {bos, eos, unk, pad}) from a GGUF's SentencePiece vocabulary."""
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers
    from tokenizers.models import BPE

    reader = GGUFReader(str(path))
    kind = bytes(reader.fields["tokenizer.ggml.model"].parts[-1]).decode()
    if kind != "llama":
        raise ValueError(f"{path}: tokenizer model {kind!r}; this reader builds SentencePiece ('llama') vocabularies")
    tokens = [bytes(p).decode("utf-8") for p in _array(reader, "tokenizer.ggml.tokens")]
    scores = np.array([p[0] for p in _array(reader, "tokenizer.ggml.scores")], np.float32)
    types = np.array([p[0] for p in _array(reader, "tokenizer.ggml.token_type")], np.int32)
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = []
    for i, t in enumerate(tokens):
        if types[i] != TOKEN_NORMAL or len(t) < 2:
            continue
        for cut in range(1, len(t)):
            left, right = t[:cut], t[cut:]
            a, b = vocab.get(left), vocab.get(right)
            if a is not None and b is not None and types[a] == TOKEN_NORMAL and types[b] == TOKEN_NORMAL:
                merges.append((-scores[i], i, a, b, left, right))
    merges.sort(key=lambda m: m[:4])
    model = BPE(vocab=vocab, merges=[(m[4], m[5]) for m in merges], unk_token=tokens[_scalar(reader, "tokenizer.ggml.unknown_token_id", 3)],
                byte_fallback=True, fuse_unk=True)
    tok = Tokenizer(model)
    prefix = bool(_scalar(reader, "tokenizer.ggml.add_space_prefix", False))
    steps = [normalizers.Prepend("▁")] if prefix else []
    tok.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
                                    + ([decoders.Strip(" ", 1, 0)] if prefix else []))
    added = [AddedToken(tokens[i], special=bool(types[i] == TOKEN_CONTROL), normalized=False)
             for i in np.flatnonzero((types == TOKEN_CONTROL) | (types == TOKEN_USER_DEFINED))]
    tok.add_tokens([a for a in added if not a.special])
    tok.add_special_tokens([a for a in added if a.special])
    ids = {name: _scalar(reader, f"tokenizer.ggml.{key}_token_id")
           for name, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding"))}
    return tok, ids
