// Named limits of the adapter file. Each one bounds the work a hostile upload can cause and
// is sized from the largest realistic adapter; docs/adapter-format.md gives the reasoning.

/** Bytes of the little-endian u64 header length that opens every safetensors file. */
export const HEADER_PREFIX_BYTES = 8;

/** Header alignment: writers pad the JSON with spaces so tensor data starts 8-byte aligned. */
export const HEADER_ALIGNMENT = 8;

/**
 * Largest JSON header. With 256 labels of 64 bytes and a 1 KiB note a header is under 20 KiB
 * (labels made of quotes and backslashes, escaped twice, can pass the limit: writers refuse
 * those). 64 KiB bounds the JSON a hostile upload can make every reader parse.
 */
export const MAX_HEADER_BYTES = 64 * 1024;

/**
 * Largest whole file: Workers KV's per-value limit (25 MiB), since one KV read serves an
 * adapter. The largest realistic adapter, every linear module of a 7B model (224) at r = 128
 * in F32 plus a 256 × 4096 F32 head, is 18 MiB.
 */
export const MAX_ADAPTER_BYTES = 25 * 1024 * 1024;

/** Largest rank r. LoRA-XS uses r ≤ 64; past 256 an r × r matrix is no longer "extra small". */
export const MAX_RANK = 256;

/** Most adapted modules M. A 405B Llama has 126 layers × 7 linear modules = 882. */
export const MAX_MODULES = 2048;

/** Most classes C of an encoder's head (labels are spelled out in the header). */
export const MAX_CLASSES = 256;

/** Largest hidden size of an encoder's head (the widest public models use 16384). */
export const MAX_HIDDEN = 16384;

/** Longest label, in UTF-8 bytes. */
export const MAX_LABEL_BYTES = 64;

/** Longest free-form `note`, in UTF-8 bytes. */
export const MAX_NOTE_BYTES = 1024;

/** Longest model id (manifest ids such as `smollm2-135m` are short slugs). */
export const MAX_MODEL_ID_BYTES = 64;

/** Deepest JSON nesting in a header: a legal one nests 3 deep (header → tensor → shape). */
export const MAX_JSON_DEPTH = 8;

/** Longest integer literal accepted in the header: 2^53 − 1 has 16 digits. */
export const MAX_INTEGER_DIGITS = 16;
