"""Block-quantized linear weights (numpy only) and their onnxruntime MatMulNBits layout.

A Q4_1 block (ggml) holds 32 weights as `d * q + m` (q in 0..15, d and m per block); a Q8_0
block as `d * q` (q in -128..127). MatMulNBits computes `(q - zero_point) * scale` with an
integer zero point, which cannot express the arbitrary per-block offset `m` exactly, and its
float zero points fall off onnxruntime's fast kernels. So a Q4_1 weight becomes two exact parts:
`W = d * (q - 8) + c` with `c = m + 8 d` constant over each block, i.e. a symmetric MatMulNBits
(default zero point 8) plus the low-rank term `blocksum(x) @ cᵀ` (rank = in / 32) that the
graph adds beside the LoRA-XS branch. Nothing is rounded twice: the graph computes the GGUF's
own weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 32


@dataclass
class Q4Weight:
    """`W[o, b*32 + j] = d[o, b] * (q[o, b*32 + j] - 8) + c[o, b]`; W is [out, in]."""

    q: np.ndarray  # uint8 [out, in], 0..15
    d: np.ndarray  # float32 [out, in / 32]
    c: np.ndarray  # float32 [out, in / 32]

    @property
    def shape(self) -> tuple[int, int]:
        return self.q.shape

    def dequantize(self) -> np.ndarray:
        out, k = self.q.shape
        blocks = (self.q.reshape(out, k // BLOCK, BLOCK).astype(np.float32) - 8.0) * self.d[..., None]
        return (blocks + self.c[..., None]).reshape(out, k)

    def rows(self, order: np.ndarray) -> Q4Weight:
        return Q4Weight(self.q[order], self.d[order], self.c[order])


@dataclass
class Q8Weight:
    """`W[o, b*B + j] = d[o, b] * q[o, b*B + j]`; W is [out, in] (symmetric, B = `block`). Q8_0 is
    B = 32; ggml's Q5_0 (`d * (q5 - 16)`) and Q6_K (`d * sc * (q6 - 32)`, sub-blocks of 16) are exact
    in this form with their codes centred: every value fits an int8."""

    q: np.ndarray  # int8 [out, in]
    d: np.ndarray  # float32 [out, in / block]
    block: int = BLOCK

    @property
    def shape(self) -> tuple[int, int]:
        return self.q.shape

    def dequantize(self) -> np.ndarray:
        out, k = self.q.shape
        b = self.block
        return (self.q.reshape(out, k // b, b).astype(np.float32) * self.d[..., None]).reshape(out, k)

    def rows(self, order: np.ndarray) -> Q8Weight:
        return Q8Weight(self.q[order], self.d[order], self.block)


def from_q4_1(q: np.ndarray, d: np.ndarray, m: np.ndarray) -> Q4Weight:
    """ggml Q4_1 (`d * q + m`) as the symmetric form plus a per-block constant."""
    d = d.astype(np.float32)
    return Q4Weight(q.astype(np.uint8), d, (m.astype(np.float32) + np.float32(8.0) * d).astype(np.float32))


def quantize_q4_1(w: np.ndarray) -> Q4Weight:
    """fp32 [out, in] → Q4_1 the way ggml rounds it (block min and max, 15 steps); for models
    that do not come as a GGUF (the tiny test models)."""
    out, k = w.shape
    if k % BLOCK:
        raise ValueError(f"in = {k} is not a multiple of the block size {BLOCK}")
    blocks = w.reshape(out, k // BLOCK, BLOCK).astype(np.float32)
    lo, hi = blocks.min(-1), blocks.max(-1)
    d = ((hi - lo) / 15.0).astype(np.float16).astype(np.float32)  # ggml stores d and m as f16
    m = lo.astype(np.float16).astype(np.float32)
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.clip(np.round((blocks - m[..., None]) * inv[..., None]), 0, 15).astype(np.uint8).reshape(out, k)
    return from_q4_1(q, d, m)


def pack_nbits(q: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned codes [out, in] → MatMulNBits' B [out, in / 32, 32 * bits / 8] (4 bits: element
    2i in the low nibble of byte i, 2i+1 in the high one)."""
    out, k = q.shape
    if bits == 8:
        return np.ascontiguousarray(q.astype(np.uint8).reshape(out, k // BLOCK, BLOCK))
    if bits != 4:
        raise ValueError(f"bits = {bits}; 4 or 8")
    packed = (q[:, 0::2] & 0xF) | ((q[:, 1::2] & 0xF) << 4)
    return np.ascontiguousarray(packed.astype(np.uint8).reshape(out, k // BLOCK, BLOCK // 2))


def q8_codes(w: Q8Weight) -> np.ndarray:
    """Q8_0's int8 codes as MatMulNBits' unsigned 8-bit codes (its default zero point is 128)."""
    return (w.q.astype(np.int16) + 128).astype(np.uint8)
