"""Named limits of the adapter file (src/format/limits.ts; docs/adapter-format.md gives the reasons)."""

from __future__ import annotations


HEADER_PREFIX_BYTES = 8  # little-endian u64 header length
MAX_HEADER_BYTES = 64 * 1024  # ordinary headers stay under 20 KiB; bounds the JSON parse
MAX_ADAPTER_BYTES = 25 * 1024 * 1024  # Workers KV's per-value limit; one KV read serves an adapter
MAX_RANK = 256  # LoRA-XS uses r <= 64; past 256 an r x r matrix is no longer "extra small"
MAX_MODULES = 2048  # a 405B Llama has 126 layers x 7 linear modules = 882
MAX_CLASSES = 256  # classes of an encoder head (labels are spelled out in the header)
MAX_HIDDEN = 16384  # widest public models
MAX_LABEL_BYTES = 64
MAX_NOTE_BYTES = 1024
MAX_MODEL_ID_BYTES = 64
MAX_JSON_DEPTH = 8  # a legal header nests 3 deep (header -> tensor -> shape)
MAX_INTEGER_DIGITS = 16  # 2^53 - 1 has 16 digits
MAX_SAFE_INTEGER = 2**53 - 1  # JavaScript's Number.MAX_SAFE_INTEGER: the largest count a header may hold
