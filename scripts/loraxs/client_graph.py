"""The client's decoder graph, built node by node from weights (numpy + onnx; no PyTorch, no tracing).

Fused onnxruntime contrib ops, the layout onnxruntime-genai's model builder emits for Llama:
packed QKV (one matmul), GroupQueryAttention with the rotary embedding inside,
SkipSimplifiedLayerNormalization (residual add + RMSNorm), packed gate/up, MatMulNBits for
block-quantized weights. Per adapted module the LoRA-XS branch `y += ((x downᵀ) Rᵀ) upᵀ` is in
the graph with `R` a required input (docs/contracts.md):

- `down` of every adapted module of a packed matmul are stacked into one [in, a·r] matmul, R's
  blocks applied as one block-diagonal [a·r, a·r] matrix (built from R once per run for all
  layers), then one [a·r, out_packed] matmul places each module's `up` on its own output rows;
- for Q4 weights the exact per-block offset (`block_quant`) rides in the same first and last
  matmuls: `x @ [blocksum | downᵀ]`, then `@ [cᵀ ; upᵀ]`, so a layer's adapter and offset
  cost three small matmuls and one add;
- or (`doubled`, SmolLM2's WebGPU graph) the residual stream is carried twice and each offset is a
  block of the MatMulNBits weight itself (`_linear_doubled`): no offset matmuls at all, four times
  the 4-bit weights in GPU memory, the same download.

Attention is `GroupQueryAttention` (`attention="gqa"`) or, for onnxruntime-web's WebGPU, whose
GroupQueryAttention is wrong for prompts of 32+ tokens prefilled in one run (docs/client.md),
plain ops (`attention="plain"`): one `RotaryEmbedding` over the packed Q and K, the new K and V
appended to the cache with `Concat`, and `MatMul` / `Add` (an explicit causal and padding mask,
built once per run) / `Softmax` / `MatMul`, grouped so that each KV head serves its query heads
without copying K or V.

Architectures (`gguf_llama.ARCHITECTURES`): Llama, and Gemma 3 with its embedding scaled by
sqrt(hidden), RMSNorm on each head of q and k before the rotary embedding (so the packed QKV is
split, normed and concatenated again), norms after attention and after the MLP as well, a GELU
(tanh) gate, local layers (GroupQueryAttention's `local_window_size`, or an extra mask for the
plain attention) with their own rotary base, the attention scale of its config, and optional final
logit soft-capping. Linear weights of 5, 6 or 8 bits (`Q8Weight`) are folded to fp32 at session
start in every variant; only 4-bit blocks run as MatMulNBits.

Inputs/outputs: `input_ids`, `attention_mask` (1 = attend; rows right-padded: GroupQueryAttention
takes each row's length from the mask's sum, positions follow from it; the plain attention numbers
positions from the cache length and masks the keys whose mask is 0), `R` (when adapted),
`past_key_values.{i}.key|value` [B, kv_heads, P, head_dim] -> `logits`, `present.{i}.key|value`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .block_quant import BLOCK, Q4Weight, Q8Weight, pack_nbits, q8_codes
from .gguf_llama import LlamaWeights

OPSET = 21
# Rotary tables cover at most this many positions (SmolLM2's whole context): Gemma 3's 32 k would
# add 64 MB of cos/sin tables to the download for contexts a client does not reach.
GRAPH_POSITIONS_MAX = 8192
# head="nbits": the output head's activations go to its int8 kernel in this many parts (_head_nbits);
# on SmolLM2 one part is 0.28 off on the logits, two 1.1e-3, three 1.5e-4 (as close as the fp32 head).
HEAD_PARTS = 3
TABLE_PIECE_BYTES = 28 << 20  # a constant table larger than this is stored in row pieces (export_client writes 32 MiB files)
IR_VERSION = 10  # onnxruntime 1.30 reads up to IR 11; 10 is what opset 21 needs
MS = "com.microsoft"
QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
GATE_UP = ("mlp.gate_proj", "mlp.up_proj")
# Node-name labels of the packed matmuls.
LABELS = {QKV: "self_attn.qkv_proj", ("self_attn.o_proj",): "self_attn.o_proj", GATE_UP: "mlp.gate_up_proj",
          ("mlp.down_proj",): "mlp.down_proj"}
# Outputs of one Split of R's per-layer tensors: WebGPU binds each as a storage buffer, and its
# guaranteed per-stage limit is 8 (input included).
R_SPLIT_FANOUT = 6


@dataclass
class Branch:
    """The LoRA-XS factors in manifest order: `down[i]` [r, in], `up[i]` [out, r]."""

    names: list[str]
    down: list[np.ndarray]
    up: list[np.ndarray]

    @property
    def rank(self) -> int:
        return self.down[0].shape[0]


class _Graph:
    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    def const(self, name: str, array: np.ndarray) -> str:
        assert name not in self._names, name
        self._names.add(name)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, outputs: int | list[str] = 1, domain: str = "",
           **attrs) -> list[str]:
        outs = [f"{name}/out{i}" if i else f"{name}/out" for i in range(outputs)] if isinstance(outputs, int) else outputs
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, domain=domain or None, **attrs))
        return outs

    def one(self, op_type: str, inputs: list[str], name: str, domain: str = "", **attrs) -> str:
        return self.op(op_type, inputs, name, 1, domain, **attrs)[0]


def _rotary_caches(head_dim: int, theta: float, positions: int) -> tuple[np.ndarray, np.ndarray]:
    # As transformers computes them (float32 inverse frequencies and products).
    inv = (1.0 / (np.float32(theta) ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim)))
    freqs = np.arange(positions, dtype=np.float32)[:, None] * inv.astype(np.float32)[None, :]
    return np.cos(freqs).astype(np.float32), np.sin(freqs).astype(np.float32)


def _block_sum_matrix(k: int) -> np.ndarray:
    """[k, k/32] of ones: `x @ it` is each block's sum of x."""
    m = np.zeros((k, k // BLOCK), np.float32)
    m[np.arange(k), np.arange(k) // BLOCK] = 1.0
    return m


def doubled_refusal(weights: LlamaWeights, q4_matmul: str = "nbits", attention: str = "gqa") -> str | None:
    """Why a graph of these weights cannot carry its residual stream twice (`doubled`), or None."""
    s = weights.shape
    if q4_matmul != "nbits" or attention != "gqa":
        return "it needs q4_matmul='nbits' and attention='gqa'"
    if s.spec.qk_norm or s.spec.sandwich_norms or s.local_layers:
        return f"it builds Llama-style layers only, not {s.spec.name}'s"
    if any(not isinstance(w, Q4Weight) for w in weights.linear.values()):
        return "it needs every linear weight in 4-bit blocks"
    if s.heads % s.kv_heads or (s.heads // s.kv_heads * s.head_dim) % BLOCK:
        return f"it needs each KV group's query width (heads / kv_heads x head_dim) in whole blocks of {BLOCK}"
    return None


class ClientGraphBuilder:
    def __init__(self, weights: LlamaWeights, branch: Branch | None, max_positions: int | None = None,
                 q4_matmul: str = "nbits", accuracy_level: int = 0, attention: str = "gqa", cache_length: int | None = None,
                 head: str = "matmul", dequantize: str = "session", gather_r: bool | None = None,
                 doubled: bool = False):
        # R's per-layer blocks: one Gather each where a WebGPU graph needs it (None: the plain and
        # static attention graphs, which only WebGPU runs), else one Split.
        self.gather_r = attention in ("plain", "static") if gather_r is None else gather_r
        if q4_matmul not in ("nbits", "folded"):
            raise ValueError(f"q4_matmul = {q4_matmul!r}; 'nbits' or 'folded'")
        if attention not in ("gqa", "plain", "static"):
            raise ValueError(f"attention = {attention!r}; 'gqa', 'plain' or 'static'")
        if attention == "static" and not cache_length:
            raise ValueError("attention='static' needs cache_length (the fixed KV cache length)")
        self.cache_length = cache_length
        self.attention = attention
        self.q4_matmul = q4_matmul
        self.accuracy_level = accuracy_level
        if head not in ("matmul", "gemm", "nbits"):
            raise ValueError(f"head = {head!r}; 'matmul', 'gemm' or 'nbits'")
        self.head = head
        if dequantize not in ("session", "run"):
            raise ValueError(f"dequantize = {dequantize!r}; 'session' or 'run'")
        self.dequantize = dequantize
        self._runtime_one: str | None = None
        self.w = weights
        self.s = weights.shape
        self.branch = branch
        self.g = _Graph()
        self.max_positions = max_positions or min(self.s.max_positions, GRAPH_POSITIONS_MAX)
        self.spec = self.s.spec
        self.index = {n: i for i, n in enumerate(branch.names)} if branch else {}
        known = {f"model.layers.{i}.{s}" for i in range(self.s.layers) for s in (*QKV, "self_attn.o_proj", *GATE_UP, "mlp.down_proj")}
        stray = [n for n in self.index if n not in known]
        if stray:
            raise ValueError(f"adapted modules the client graph cannot place: {stray[:3]} "
                             "(it adapts the Llama attention and MLP projections only)")
        self.groups = [(i, parts) for i in range(self.s.layers)
                       for parts in (QKV, ("self_attn.o_proj",), GATE_UP, ("mlp.down_proj",))]
        adapted = {len(self._adapted(i, parts)) for i, parts in self.groups} - {0}
        if len(adapted) > 1:
            raise ValueError("every adapted matmul must adapt the same number of modules "
                             f"(found {sorted(adapted)}); adapt the same projections in every layer")
        self.per_group = adapted.pop() if adapted else 0
        self.block_diag: dict[tuple[int, tuple[str, ...]], str] = {}
        self.doubled = doubled
        self.r_folded = False  # doubled: R multiplied into each `down` once per run
        refusal = doubled_refusal(weights, q4_matmul, attention) if doubled else None
        if refusal:
            raise ValueError(f"doubled=True: {refusal}")

    # -- the residual stream carried twice (doubled=True) --------------------------------------
    # A MatMulNBits block is `scale * (code - 8)`, so Q4_1's per-block constant c cannot ride in it:
    # the other graphs add `blocksum(x) @ cᵀ` with two small matmuls and an Add per projection. Here
    # every activation a projection reads is carried twice, `[x, x]`, and the projection's weight is
    # `[W | C]` along its input: the first copy meets the 4-bit codes, the second a block of codes 9
    # whose scale is c (`c * (9 - 8)`), so one MatMulNBits computes `x Wᵀ + blocksum(x) cᵀ` exactly.
    # Projections feeding the residual write their rows twice, so the stream, the norms (an RMS over
    # `[x, x]` is the RMS over x) and the MLP stay doubled for free; the query heads are doubled inside
    # each KV group, so attention also returns every head twice. The extra codes and the duplicated
    # rows are built from the downloaded ones by constant nodes that onnxruntime folds at session start.
    def _doubled_layout(self, parts: tuple[str, ...], k: int, outs: list[int]) -> tuple[list[tuple[int, int]], list[int]]:
        """Per input block of the doubled activation (block of x, copy), and per output row the packed
        row it computes. The query heads are doubled group by group (a KV group's heads, then the same
        again), so GroupQueryAttention with 2·heads serves each copy from its own KV head."""
        kb, s = k // BLOCK, self.s
        width = s.heads // s.kv_heads * s.head_dim  # a KV group's query width
        groups = [(j * width, (j + 1) * width) for j in range(s.kv_heads)]
        if parts == ("self_attn.o_proj",):
            slots = [(b, copy) for lo, hi in groups for copy in (0, 1) for b in range(lo // BLOCK, hi // BLOCK)]
        else:
            slots = [(b, 0) for b in range(kb)] + [(b, 1) for b in range(kb)]
        if parts == QKV:
            rows = [r for lo, hi in groups for _ in (0, 1) for r in range(lo, hi)] + list(range(s.heads * s.head_dim, sum(outs)))
        elif parts == GATE_UP:
            rows = [*range(outs[0])] * 2 + [*range(outs[0], sum(outs))] * 2
        else:
            rows = [*range(sum(outs))] * 2
        return slots, rows

    def _take(self, x: str, index: list[int], axis: int, name: str, size: int) -> str:
        """`x` indexed along `axis` (of length `size`) by `index`, as Slices of its consecutive runs and a
        Concat: nodes of constants that onnxruntime folds at session start, with no index array to download."""
        if index == list(range(size)):
            return x
        runs: list[list[int]] = []
        for i in index:
            if runs and i == runs[-1][1]:
                runs[-1][1] += 1
            else:
                runs.append([i, i + 1])
        ax = self._shape_const(f"twin/axis{axis}", [axis])
        parts = [self.g.one("Slice", [x, self.g.const(f"{name}.start{j}", np.array([lo], np.int64)),
                                      self.g.const(f"{name}.end{j}", np.array([hi], np.int64)), ax], f"{name}/slice{j}")
                 for j, (lo, hi) in enumerate(runs)]
        return parts[0] if len(parts) == 1 else self.g.one("Concat", parts, f"{name}/join", axis=axis)

    def _linear_doubled(self, x: str, layer: int, parts: tuple[str, ...]) -> str:
        g = self.g
        names = [f"model.layers.{layer}.{p}" for p in parts]
        ws = [self.w.linear[n] for n in names]
        outs = [w.shape[0] for w in ws]
        k, n_out, kb = ws[0].shape[1], sum(outs), ws[0].shape[1] // BLOCK
        pre = f"model.layers.{layer}.{LABELS[parts]}"
        slots, rows = self._doubled_layout(parts, k, outs)
        cols = [blk + copy * kb for blk, copy in slots]  # blocks of [W's codes | c's codes]
        codes = g.const(f"{pre}.qweight", pack_nbits(np.concatenate([w.q for w in ws]), 4))  # [n, kb, 16]
        nines = g.one("Expand", [self._scalar("q4/code9", np.full((1, 1, 1), 0x99, np.uint8)),
                                 g.const(f"{pre}.codes_shape", np.array([n_out, kb, BLOCK // 2], np.int64))], f"{pre}/twin.nines")
        b = g.one("Concat", [codes, nines], f"{pre}/twin.codes", axis=1)
        b = self._take(self._take(b, cols, 1, f"{pre}/twin.blocks", 2 * kb), rows, 0, f"{pre}/twin.rows", n_out)
        scales = g.one("Concat", [g.const(f"{pre}.scales", np.concatenate([w.d for w in ws])),
                                  g.const(f"{pre}.offsets", np.concatenate([w.c for w in ws]))], f"{pre}/twin.scales", axis=1)
        scales = self._take(self._take(scales, cols, 1, f"{pre}/twin.block_scales", 2 * kb), rows, 0, f"{pre}/twin.row_scales", n_out)
        scales = g.one("Reshape", [scales, self._shape_const("q4/flat", [-1])], f"{pre}/twin.flat_scales")
        y = g.one("MatMulNBits", [x, b, scales], f"{pre}/MatMulNBits", MS, K=len(slots) * BLOCK, N=len(rows), bits=4,
                  block_size=BLOCK, accuracy_level=self.accuracy_level)
        adapted = self._adapted(layer, parts)
        if not adapted:
            return y
        up_t = self._placed_up(names, outs, adapted)
        right = self._take(g.const(f"{pre}.aux_out", np.ascontiguousarray(up_t)), rows, 1, f"{pre}/aux_out_rows", n_out)  # every copy of its rows
        if self.r_folded:  # `down` times R came with this run's R (_build_block_diagonals)
            z = g.one("MatMul", [x, self.block_diag[(layer, parts)]], f"{pre}/aux_in")
        else:
            z = g.one("MatMul", [x, self._doubled_down(layer, parts)], f"{pre}/aux_in")
            z = g.one("MatMul", [z, self.block_diag[(layer, parts)]], f"{pre}/aux_R")
        z = g.one("MatMul", [z, right], f"{pre}/aux_out")
        return g.one("Add", [y, z], f"{pre}/aux_add")

    def _placed_up(self, names: list[str], outs: list[int], adapted: list[str]) -> np.ndarray:
        """[a·r, out_packed]: each adapted module's `up`ᵀ on its own output rows of the packed matmul."""
        r = self.branch.rank
        up_t = np.zeros((r * len(adapted), sum(outs)), np.float32)
        for j, name in enumerate(adapted):
            start = sum(outs[: names.index(name)])
            up_t[j * r:(j + 1) * r, start:start + outs[names.index(name)]] = self.branch.up[self.index[name]].T
        return up_t

    def _doubled_down(self, layer: int, parts: tuple[str, ...]) -> str:
        """The adapted modules' `down`ᵀ for the doubled input, [1, 2·in, a·r]: read from the first copy of
        each block, zeros for the second (constant nodes, folded at session start)."""
        g = self.g
        k = self._in_dim(parts)
        pre = f"model.layers.{layer}.{LABELS[parts]}"
        adapted = self._adapted(layer, parts)
        down_t = np.concatenate([self.branch.down[self.index[n]].T for n in adapted], 1).astype(np.float32)  # [in, a·r]
        zeros = g.one("ConstantOfShape", [g.const(f"{pre}.aux_zeros_shape", np.array([k, down_t.shape[1]], np.int64))], f"{pre}/aux_zeros",
                      value=numpy_helper.from_array(np.zeros(1, np.float32)))
        left = g.one("Concat", [g.const(f"{pre}.aux_in", np.ascontiguousarray(down_t)), zeros], f"{pre}/aux_in_copies", axis=0)
        slots, _ = self._doubled_layout(parts, k, [self.w.linear[f"model.layers.{layer}.{p}"].shape[0] for p in parts])
        left = self._take(left, [blk * BLOCK + j + copy * k for blk, copy in slots for j in range(BLOCK)], 0, f"{pre}/aux_in_rows", 2 * k)
        return g.one("Unsqueeze", [left, self._shape_const("r/axis0", [0])], f"{pre}/aux_in_batch")

    def _norm_weight(self, gamma: np.ndarray) -> np.ndarray:
        return np.concatenate([gamma, gamma]) if self.doubled else gamma

    def _adapted(self, layer: int, parts: tuple[str, ...]) -> list[str]:
        return [f"model.layers.{layer}.{p}" for p in parts if f"model.layers.{layer}.{p}" in self.index]

    # -- R, once per run: one block-diagonal matrix per adapted matmul -------------------------
    def _build_block_diagonals(self) -> None:
        if not self.index:
            return
        g, r, a = self.g, self.branch.rank, self.per_group
        order = [(i, parts) for i, parts in self.groups if self._adapted(i, parts)]
        idx = np.array([self.index[n] for i, parts in order for n in self._adapted(i, parts)], np.int64)
        rsel = "R" if np.array_equal(idx, np.arange(len(self.index))) else g.one(
            "Gather", ["R", g.const("r/order", idx)], "r/gather", axis=0)
        rt = g.one("Transpose", [rsel], "r/transpose", perm=[0, 2, 1])
        n = len(order)
        blocks = g.one("Reshape", [rt, g.const("r/shape5", np.array([n, a, r, 1, r], np.int64))], "r/reshape5")
        eye = np.eye(a, dtype=np.float32).reshape(1, a, 1, a, 1)
        diag = g.one("Mul", [blocks, g.const("r/eye", eye)], "r/mask")
        diag = g.one("Reshape", [diag, g.const("r/shape3", np.array([n, a * r, a * r], np.int64))], "r/blockdiag")
        offsets = {self._has_offsets(i, parts) for i, parts in order}
        if len(offsets) > 1:
            raise ValueError("adapted matmuls mix 4-bit blocks with other weights; adapt projections of one weight kind")
        if offsets.pop():
            # The offset columns (block sums) come first and pass through: identity for them.
            sizes = {self._in_dim(parts) // BLOCK for _, parts in order}
            if len(sizes) > 1:
                raise ValueError("adapted matmuls with different input sizes are not supported with Q4 weights")
            kb = sizes.pop()
            pads = g.const("r/pads", np.array([0, kb, kb, 0, 0, 0], np.int64))
            diag = g.one("Pad", [diag, pads], "r/pad")
            ident = np.zeros((1, kb + a * r, kb + a * r), np.float32)
            ident[0, :kb, :kb] = np.eye(kb, dtype=np.float32)
            diag = g.one("Add", [diag, g.const("r/identity", ident)], "r/with_offsets")
        outs = [f"r/blockdiag.{i}.{parts[0].split('.')[-1]}" for i, parts in order]
        widths = {self._in_dim(parts) for _, parts in order}
        if self.doubled and len(widths) == 1:
            # Each matmul's `down` times its R block, for every layer in one batched MatMul a run, then a
            # tree of Splits (at most R_SPLIT_FANOUT outputs each: WebGPU binds every output as a
            # storage buffer): 7 kernels a run for R where one Gather and one MatMul per layer took 60.
            downs = g.one("Concat", [self._doubled_down(i, parts) for i, parts in order], "r/downs", axis=0)  # [n, 2·in, a·r]
            self.r_folded = True
            self._split_tree(g.one("MatMul", [downs, diag], "r/fold_downs"), [o.replace("blockdiag", "down_r") for o in outs], "r/split")
            self.block_diag = {key: name.replace("blockdiag", "down_r") for key, name in zip(order, outs)}
            return
        if self.gather_r and n > 1:
            # One Gather per matmul (the WebGPU graphs): a WebGPU shader binds every output of a Split
            # as a storage buffer, beyond the per-stage limit (10 on SwiftShader, 16 on an H100's Dawn)
            # for more than a few layers.
            for j, out in enumerate(outs):
                g.op("Gather", [diag, g.const(f"r/index.{j}", np.array([j], np.int64))], f"r/gather.{j}", [out], axis=0)
        else:
            g.op("Split", [diag], "r/split", outs, axis=0, num_outputs=n) if n > 1 else g.op("Identity", [diag], "r/one", outs)
        self.block_diag = {key: name for key, name in zip(order, outs)}

    def _split_tree(self, x: str, outs: list[str], name: str) -> None:
        """Split `x` along axis 0 into one row per name of `outs`, by Splits of at most R_SPLIT_FANOUT outputs."""
        g, n = self.g, len(outs)
        if n == 1:
            g.op("Identity", [x], name, outs)
            return
        if n <= R_SPLIT_FANOUT:
            g.op("Split", [x, self._shape_const(f"r/ones{n}", [1] * n)], name, outs, axis=0)
            return
        size = -(-n // R_SPLIT_FANOUT)
        chunks = [outs[i:i + size] for i in range(0, n, size)]
        parts = g.op("Split", [x, self._shape_const(f"{name}.sizes", [len(c) for c in chunks])], name, len(chunks), axis=0)
        for j, (part, chunk) in enumerate(zip(parts, chunks)):
            self._split_tree(part, chunk, f"{name}.{j}")

    def _has_offsets(self, layer: int, parts: tuple[str, ...]) -> bool:
        """Whether this matmul's first aux product starts with the block sums (Q4 blocks run by MatMulNBits)."""
        return isinstance(self.w.linear[f"model.layers.{layer}.{parts[0]}"], Q4Weight) and self.q4_matmul == "nbits" and not self.doubled

    def _in_dim(self, parts: tuple[str, ...]) -> int:
        return self.w.linear[f"model.layers.0.{parts[0]}"].shape[1]

    # -- one packed matmul with its offset and adapter --------------------------------------
    def linear(self, x: str, layer: int, parts: tuple[str, ...]) -> str:
        if self.doubled:
            return self._linear_doubled(x, layer, parts)
        g = self.g
        names = [f"model.layers.{layer}.{p}" for p in parts]
        ws = [self.w.linear[n] for n in names]
        outs = [w.shape[0] for w in ws]
        k, n_out = ws[0].shape[1], sum(outs)
        pre = f"model.layers.{layer}.{LABELS[parts]}"
        kinds = {(type(w), getattr(w, "block", BLOCK)) for w in ws}
        if len(kinds) > 1:
            raise ValueError(f"{pre}: the packed weights {names} are stored in different block formats {sorted(str(k) for k in kinds)}")
        if isinstance(ws[0], Q8Weight):
            table = self._fold_q8(pre, Q8Weight(np.concatenate([w.q for w in ws]), np.concatenate([w.d for w in ws]), ws[0].block))
            y = g.one("MatMul", [x, table], f"{pre}/MatMul")
            left, right = [], []
        elif isinstance(ws[0], Q4Weight) and self.q4_matmul == "folded":
            table = self._fold_q4(pre, Q4Weight(np.concatenate([w.q for w in ws]), np.concatenate([w.d for w in ws]),
                                                np.concatenate([w.c for w in ws])))
            y = g.one("MatMul", [x, table], f"{pre}/MatMul")
            left, right = [], []
        elif isinstance(ws[0], Q4Weight):
            q = np.concatenate([w.q for w in ws])
            d = np.concatenate([w.d for w in ws])
            y = g.one("MatMulNBits", [x, g.const(f"{pre}.qweight", pack_nbits(q, 4)), g.const(f"{pre}.scales", d.reshape(-1))],
                      f"{pre}/MatMulNBits", MS, K=k, N=n_out, bits=4, block_size=BLOCK, accuracy_level=self.accuracy_level)
            left = [_block_sum_matrix(k)]
            right = [np.concatenate([w.c for w in ws]).T]  # [k/32, out]
        else:
            wt = np.concatenate(ws).T.astype(np.float32)
            y = g.one("MatMul", [x, g.const(f"{pre}.weight_t", np.ascontiguousarray(wt))], f"{pre}/MatMul")
            left, right = [], []
        adapted = self._adapted(layer, parts)
        if adapted:
            left += [self.branch.down[self.index[name]].T.astype(np.float32) for name in adapted]  # [in, r] each
            right.append(self._placed_up(names, outs, adapted))
        if not left:
            return y
        z = g.one("MatMul", [x, g.const(f"{pre}.aux_in", np.ascontiguousarray(np.concatenate(left, 1)))], f"{pre}/aux_in")
        if adapted:
            z = g.one("MatMul", [z, self.block_diag[(layer, parts)]], f"{pre}/aux_R")
        z = g.one("MatMul", [z, g.const(f"{pre}.aux_out", np.ascontiguousarray(np.concatenate(right, 0)))], f"{pre}/aux_out")
        return g.one("Add", [y, z], f"{pre}/aux_add")

    def _fold_q4(self, pre: str, w: Q4Weight) -> str:
        """The fp32 [in, out] matrix `d * q + m` (ggml's Q4_1 formula) from the 4-bit codes, computed
        by nodes of constants only: onnxruntime folds them once when the session starts (every
        build, WASM included), so the download stays 4-bit and each token runs a plain fp32 MatMul.
        The codes are stored transposed, `[in / 32, 16, out]` bytes holding element j of a block in
        the low nibble and element j + 16 in the high one, so the folding chain is short (its
        intermediates are held until folding ends): two byte ops, one concat, Cast, Mul, Add, Reshape."""
        g = self.g
        n, k = w.shape
        q = w.q.reshape(n, k // BLOCK, 2, BLOCK // 2).transpose(1, 2, 3, 0)  # [kb, 2, 16, n]
        packed = np.ascontiguousarray((q[:, 0] | (q[:, 1] << 4)).astype(np.uint8))  # [kb, 16, n]
        codes = g.const(f"{pre}.qweight_t", packed)
        low = g.one("BitwiseAnd", [codes, self._scalar("q4/low_mask", np.array(15, np.uint8))], f"{pre}/fold.low")
        high = g.one("BitShift", [codes, self._scalar("q4/four", np.array(4, np.uint8))], f"{pre}/fold.high", direction="RIGHT")
        blocks = g.one("Concat", [low, high], f"{pre}/fold.blocks", axis=1)  # [kb, 32, n]: W^T by blocks
        m = w.c - np.float32(8.0) * w.d  # the block minimum: c = m + 8 d
        vals = g.one("Mul", [self._codes_to_float(blocks, f"{pre}/fold.cast"),
                             g.const(f"{pre}.scales_t", np.ascontiguousarray(w.d.T[:, None, :]))], f"{pre}/fold.scale")
        vals = g.one("Add", [vals, g.const(f"{pre}.mins_t", np.ascontiguousarray(m.T[:, None, :].astype(np.float32)))], f"{pre}/fold.offset")
        return g.one("Reshape", [vals, g.const(f"{pre}.shape", np.array([k, n], np.int64))], f"{pre}/fold.rows")

    def _fold_q8(self, pre: str, w: Q8Weight) -> str:
        """The fp32 [in, out] matrix `d * q` from int8 codes stored transposed (`[in / B, B, out]`),
        by constant nodes onnxruntime folds at session start (Cast, Mul, Reshape)."""
        g = self.g
        n, k = w.shape
        b = w.block
        codes = g.const(f"{pre}.qweight8_t", np.ascontiguousarray(w.q.reshape(n, k // b, b).transpose(1, 2, 0)))
        vals = g.one("Mul", [self._codes_to_float(codes, f"{pre}/fold.cast"),
                             g.const(f"{pre}.scales_t", np.ascontiguousarray(w.d.T[:, None, :].astype(np.float32)))], f"{pre}/fold.scale")
        return g.one("Reshape", [vals, g.const(f"{pre}.shape", np.array([k, n], np.int64))], f"{pre}/fold.rows")

    def _scalar(self, name: str, value) -> str:
        if name not in self.g._names:
            self.g.const(name, value if isinstance(value, np.ndarray) else np.asarray(value, np.float32))
        return name

    def _embedding(self) -> tuple[str, str | None]:
        """Token embedding lookup; for Q8 the codes are shared with the (tied) output head."""
        g, e = self.g, self.w.embedding
        if isinstance(e, Q8Weight) and self.spec.name != "llama":
            # int8 codes [vocab, hidden / 32, 32] (no zero point to subtract) and their scales; the head
            # folds the same codes once (_head_gemm). (DequantizeLinear would be one node, but
            # onnxruntime neither folds it nor leaves DequantizeLinear + MatMul unfused: it becomes an
            # 8-bit MatMulNBits with int8 activations, 0.1 off on the logits.)
            codes = self._table("model.embed_tokens.qweight", np.ascontiguousarray(e.q.reshape(e.shape[0], -1, BLOCK)))
            scales = g.const("model.embed_tokens.scales", e.d.reshape(e.shape[0], -1, 1))
            rows = g.one("Cast", [g.one("Gather", [codes, "input_ids"], "emb/gather_codes", axis=0)], "emb/cast", to=TensorProto.FLOAT)
            vals = g.one("Mul", [rows, g.one("Gather", [scales, "input_ids"], "emb/gather_scales", axis=0)], "emb/scale")
            h = g.one("Reshape", [vals, g.const("emb/shape", np.array([0, 0, -1], np.int64))], "emb/rows")
            return self._scale_embedding(h), codes
        if isinstance(e, Q8Weight):
            codes = self._table("model.embed_tokens.qweight", pack_nbits(q8_codes(e), 8).reshape(e.shape[0], -1, BLOCK))
            scales = g.const("model.embed_tokens.scales", e.d.reshape(e.shape[0], -1, 1))
            rows = g.one("Gather", [codes, "input_ids"], "emb/gather_codes", axis=0)
            vals = g.one("Sub", [g.one("Cast", [rows], "emb/cast", to=TensorProto.FLOAT), self._q8_zero()], "emb/center")
            vals = g.one("Mul", [vals, g.one("Gather", [scales, "input_ids"], "emb/gather_scales", axis=0)], "emb/scale")
            h = g.one("Reshape", [vals, g.const("emb/shape", np.array([0, 0, -1], np.int64))], "emb/rows")
            return self._scale_embedding(h), codes
        table = g.const("model.embed_tokens.weight", e.astype(np.float32))
        return self._scale_embedding(g.one("Gather", [table, "input_ids"], "emb/gather", axis=0)), None

    def _scale_embedding(self, h: str) -> str:
        if not self.spec.scaled_embedding:
            return h
        # As transformers: sqrt(hidden) as a float32 scalar.
        scale = np.array(np.float32(self.s.hidden ** 0.5), np.float32)
        return self.g.one("Mul", [h, self.g.const("emb/scale", scale)], "emb/scaled")

    def _table(self, name: str, array: np.ndarray) -> str:
        """A constant table; one larger than a data file (Gemma 3's 168 MB of embedding codes) is stored
        as row pieces that a Concat joins, folded once at session start, so every file stays cacheable."""
        if array.nbytes <= TABLE_PIECE_BYTES:
            return self.g.const(name, array)
        rows = max(1, TABLE_PIECE_BYTES // (array.nbytes // array.shape[0]))
        pieces = [self.g.const(f"{name}.rows{i}", array[i:i + rows]) for i in range(0, array.shape[0], rows)]
        return self.g.op("Concat", pieces, f"{name}/join", [name], axis=0)[0]

    def _codes_to_float(self, codes: str, name: str) -> str:
        """Integer weight codes as fp32 values. `dequantize="session"`: a Cast of constants, which
        onnxruntime folds with the rest of the dequantization when the session starts. `"run"`: a
        DequantizeLinear whose scale (1.0) is computed from `input_ids`, so no optimizer can fold it and
        each run rebuilds the fp32 weights it needs: slower, but the session holds only the codes (for a
        model whose folded weights do not fit onnxruntime-web's 4 GB WASM heap)."""
        g = self.g
        if self.dequantize == "session":
            return g.one("Cast", [codes], name, to=TensorProto.FLOAT)
        if self._runtime_one is None:
            size = g.one("Size", ["input_ids"], "dq/ids_size")
            some = g.one("Greater", [size, g.const("dq/zero", np.array(0, np.int64))], "dq/ids_some")
            self._runtime_one = g.one("Cast", [some], "dq/one", to=TensorProto.FLOAT)
        return g.one("DequantizeLinear", [codes, self._runtime_one], name)

    def _q8_zero(self) -> str:
        if "q8/zero_point" not in self.g._names:
            self.g.const("q8/zero_point", np.array(128, np.float32))
        return "q8/zero_point"

    def _head(self, h: str) -> str:
        g, e = self.g, self.w.embedding
        if self.spec.name != "llama":
            return self._softcap(self._head_gemm(h))
        if not isinstance(e, Q8Weight):
            # Gemm(transB) reads the tied table as it is (no transposed copy).
            return self._gemm_rows(h, "model.embed_tokens.weight", ["logits"])
        if self.head == "nbits":
            return self._head_nbits(h)
        # `matmul` and `gemm`: dequantized from the same codes by nodes of constants only, which
        # onnxruntime folds into one fp32 [vocab, hidden] matrix when the session starts; the
        # download stays 8-bit.
        table = g.one("Mul", [g.one("Sub", [self._codes_to_float("model.embed_tokens.qweight", "lm_head/cast"),
                                           self._q8_zero()], "lm_head/center"), "model.embed_tokens.scales"], "lm_head/dequantize")
        table = g.one("Reshape", [table, g.const("lm_head/table_shape", np.array([e.shape[0], e.shape[1]], np.int64))], "lm_head/table")
        if self.head == "gemm":
            return self._gemm_rows(h, table, ["logits"])
        # `head="matmul"`: a transposed copy [hidden, vocab] folded at start and a plain MatMul, the
        # faster of the two in onnxruntime-web's WASM build (Gemm(transB) takes twice as long there).
        table_t = g.one("Transpose", [table], "lm_head/transpose", perm=[1, 0])
        return g.op("MatMul", [h, table_t], "lm_head/MatMul", ["logits"])[0]

    def _head_gemm(self, h: str) -> str:
        """`h @ Eᵀ` as Gemm(transB) on the table as stored: for a Q8 table the folded fp32 matrix is
        [vocab, hidden] with no transposed copy beside it (Gemma 3's table is 671 MB in fp32)."""
        g, e = self.g, self.w.embedding
        table = "model.embed_tokens.weight"
        if isinstance(e, Q8Weight):  # int8 codes (_embedding): Cast, Mul, Reshape, folded at session start
            table = g.one("Mul", [self._codes_to_float("model.embed_tokens.qweight", "lm_head/cast"),
                                  "model.embed_tokens.scales"], "lm_head/dequantize")
            table = g.one("Reshape", [table, g.const("lm_head/table_shape", np.array([e.shape[0], e.shape[1]], np.int64))], "lm_head/table")
        return self._gemm_rows(h, table, 1)

    def _head_nbits(self, h: str) -> str:
        """`head="nbits"`: the tied Q8_0 table as downloaded (`[vocab, hidden / 32, 32]` codes, zero
        point 128, and its scales) read by one 8-bit MatMulNBits with int8 activations (accuracy_level
        4): a quarter of the fp32 table's bytes a token. That kernel rounds each block of 32
        activations to steps of max|x| / 127 (on SmolLM2, 0.28 off on the logits and other greedy
        tokens; its fp32-accuracy path has no fast kernel: 90 ms a token). So `h` goes in as
        HEAD_PARTS rows that sum to it: every part but the last already lies on its own block grid
        (steps of its max / 127), which the kernel's rounding keeps exactly, and the last, the
        remainder, is at most half a step of the one before, so each part cuts the rounding error
        about 250-fold; the logits are the sum of the parts' rows."""
        g, e = self.g, self.w.embedding
        vocab, hidden = e.shape
        parts = HEAD_PARTS
        rest = g.one("Reshape", [h, g.const("lm_head/blocks_shape", np.array([0, 0, hidden // BLOCK, BLOCK], np.int64))], "lm_head/blocks")
        pieces = []
        axis = g.const("lm_head/block_axis", np.array([-1], np.int64))
        for p in range(parts - 1):
            amax = g.one("ReduceMax", [g.one("Abs", [rest], f"lm_head/abs.{p}"), axis], f"lm_head/amax.{p}", keepdims=1)
            step = g.one("Div", [g.one("Max", [amax, self._scalar("lm_head/tiny", np.array(1e-30, np.float32))], f"lm_head/amax_floor.{p}"),
                                 self._scalar("lm_head/int8_max", np.array(127.0, np.float32))], f"lm_head/step.{p}")
            grid = g.one("Mul", [g.one("Round", [g.one("Div", [rest, step], f"lm_head/steps.{p}")], f"lm_head/round.{p}"), step], f"lm_head/part.{p}")
            pieces.append(grid)
            rest = g.one("Sub", [rest, grid], f"lm_head/rest.{p}")
        pieces.append(rest)
        rows = g.one("Concat", pieces, "lm_head/parts", axis=0)  # [parts * batch, seq, hidden / 32, 32]
        rows = g.one("Reshape", [rows, g.const("lm_head/rows_shape", np.array([0, 0, hidden], np.int64))], "lm_head/rows")
        # MatMulNBits takes its scales flat; this Reshape of a constant is folded at session start.
        scales = g.one("Reshape", ["model.embed_tokens.scales", g.const("lm_head/scales_shape", np.array([-1], np.int64))], "lm_head/scales")
        y = g.one("MatMulNBits", [rows, "model.embed_tokens.qweight", scales], "lm_head/MatMulNBits", MS,
                  K=hidden, N=vocab, bits=8, block_size=BLOCK, accuracy_level=4)
        if parts == 1:
            return g.op("Identity", [y], "lm_head/logits", ["logits"])[0]
        ys = g.op("Split", [y], "lm_head/split_parts", parts, axis=0, num_outputs=parts)
        total = ys[0]
        for p in range(1, parts):
            total = g.op("Add", [total, ys[p]], f"lm_head/sum.{p}", ["logits"] if p == parts - 1 else 1)[0]
        return total

    def _gemm_rows(self, h: str, table: str, outputs: int | list[str]) -> str:
        """`h @ tableᵀ` for a [rows, hidden] table: the rows of every position as one Gemm(transB),
        back to [batch, sequence, rows]. On onnxruntime CPU this reads the fp32 table in 0.6 of the
        time MatMul takes on its transposed copy (one decode step of SmolLM2's head: 1.3 vs 2.2 ms)."""
        g = self.g
        flat = g.one("Reshape", [h, g.const("lm_head/flat", np.array([-1, self.s.hidden], np.int64))], "lm_head/flatten")
        y = g.one("Gemm", [flat, table], "lm_head/Gemm", transB=1)
        shape = g.one("Concat", [g.one("Shape", ["input_ids"], "lm_head/ids_shape"), g.const("lm_head/vocab", np.array([self.s.vocab], np.int64))],
                      "lm_head/shape", axis=0)
        return g.op("Reshape", [y, shape], "lm_head/unflatten", outputs)[0]

    def _softcap(self, logits: str) -> str:
        g, c = self.g, self.s.final_softcap
        if not c:
            return g.op("Identity", [logits], "lm_head/logits", ["logits"])[0]
        cap = self._scalar("lm_head/softcap", np.array(c, np.float32))
        t = g.one("Tanh", [g.one("Div", [logits, cap], "lm_head/softcap_div")], "lm_head/softcap_tanh")
        return g.op("Mul", [t, cap], "lm_head/softcap", ["logits"])[0]

    # -- attention from plain ops (the WebGPU graph) --------------------------------------------
    def _plain_attention_inputs(self) -> None:
        """Once per run: position ids [B, S] (the cache length P onwards) and the additive mask
        [B, 1, G*S, T]: 0 where query s may attend key t (t <= P + s and attention_mask[b, t] = 1),
        -1e9 elsewhere, its S rows repeated for each of the G query heads of a KV head."""
        g, s = self.g, self.s
        i64 = lambda name, v: self._scalar(name, np.array(v, np.int64))  # noqa: E731
        ids_shape = g.one("Shape", ["input_ids"], "attn/ids_shape")
        seq = g.one("Gather", [ids_shape, i64("attn/index1", 1)], "attn/seq_len", axis=0)
        total = g.one("Gather", [g.one("Shape", ["attention_mask"], "attn/mask_shape"), "attn/index1"], "attn/total_len", axis=0)
        past = g.one("Sub", [total, seq], "attn/past_len")
        positions = g.one("Range", [past, total, i64("attn/step", 1)], "attn/positions")  # [S]
        g.op("Expand", [g.one("Unsqueeze", [positions, g.const("attn/axes0", np.array([0], np.int64))], "attn/positions_row"), ids_shape],
             "attn/position_ids", ["attn/position_ids"])
        keys = g.one("Range", [i64("attn/zero", 0), total, "attn/step"], "attn/keys")  # [T]
        future = g.one("Greater", [g.one("Unsqueeze", [keys, "attn/axes0"], "attn/keys_row"),
                                   g.one("Unsqueeze", [positions, g.const("attn/axes1", np.array([1], np.int64))], "attn/positions_col")],
                       "attn/future")  # [S, T]
        neg = self._scalar("attn/masked", np.array(-1e9, np.float32))
        causal = g.one("Mul", [g.one("Cast", [future], "attn/future_f", to=TensorProto.FLOAT), neg], "attn/causal")
        keep = g.one("Cast", ["attention_mask"], "attn/keep", to=TensorProto.FLOAT)  # [B, T]
        padded = g.one("Mul", [g.one("Sub", [self._scalar("attn/one_f", np.array(1.0, np.float32)), keep], "attn/drop"), neg], "attn/padding")
        padded = g.one("Unsqueeze", [padded, g.const("attn/axes12", np.array([1, 2], np.int64))], "attn/padding_rows")  # [B, 1, 1, T]
        mask = g.one("Add", [causal, padded], "attn/mask")  # [B, 1, S, T]
        group = s.heads // s.kv_heads
        g.op("Tile", [mask, g.const("attn/repeats", np.array([1, 1, group, 1], np.int64))], "attn/mask_tiled", ["attn/mask_grouped"])
        if s.local_layers:
            # Local layers also mask the keys `window` or more positions back: t <= P + s - window.
            old = g.one("LessOrEqual", [g.one("Unsqueeze", [keys, "attn/axes0"], "attn/keys_row_local"),
                                        g.one("Sub", [g.one("Unsqueeze", [positions, "attn/axes1"], "attn/positions_col_local"),
                                                      i64("attn/window", s.sliding_window)], "attn/window_start")], "attn/too_old")
            local = g.one("Add", [mask, g.one("Mul", [g.one("Cast", [old], "attn/too_old_f", to=TensorProto.FLOAT), neg], "attn/window_mask")],
                          "attn/mask_local")
            g.op("Tile", [local, "attn/repeats"], "attn/mask_local_tiled", ["attn/mask_local_grouped"])

    def _plain_attention(self, qkv: str, layer: int, cos: str, sin: str, mask: str = "attn/mask_grouped") -> str:
        g, s = self.g, self.s
        pre = f"model.layers.{layer}/attn"
        h, kv, d = s.heads, s.kv_heads, s.head_dim
        group = h // kv
        qk, v = g.op("Split", [qkv, self._shape_const("attn/split_qk_v", [(h + kv) * d, kv * d])], f"{pre}/split", 2, axis=-1)
        qk = g.one("RotaryEmbedding", [qk, "attn/position_ids", cos, sin], f"{pre}/rotary", MS, interleaved=0, num_heads=h + kv)
        split_qk = self._shape_const("attn/split_q_k", [h * d, kv * d])
        q, k = g.op("Split", [qk, split_qk], f"{pre}/split_qk", 2, axis=-1)
        q = g.one("Mul", [q, self._scalar("attn/scale", np.array(self._attn_scale(), np.float32))], f"{pre}/q_scale")
        q = g.one("Reshape", [q, self._shape_const("attn/q_heads", [0, 0, kv, group, d])], f"{pre}/q_heads")
        q = g.one("Transpose", [q], f"{pre}/q_transpose", perm=[0, 2, 3, 1, 4])  # [B, kv, G, S, d]
        q = g.one("Reshape", [q, self._shape_const("attn/q_rows", [0, 0, -1, d])], f"{pre}/q_rows")  # [B, kv, G*S, d]
        present = []
        for name, x in (("key", k), ("value", v)):
            x = g.one("Reshape", [x, self._shape_const("attn/kv_heads", [0, 0, kv, d])], f"{pre}/{name}_heads")
            x = g.one("Transpose", [x], f"{pre}/{name}_transpose", perm=[0, 2, 1, 3])  # [B, kv, S, d]
            if self.attention == "static":
                # The fixed cache is read, never written: the new row is an output (`present.*`, [1, kv, 1, d])
                # that the client copies into row `position` of its cache buffer after the run.
                g.op("Identity", [x], f"{pre}/{name}_new", [f"present.{layer}.{name}"])
                present.append(g.one("Concat", [f"past_key_values.{layer}.{name}", x], f"{pre}/{name}_cache", axis=2))
            else:
                present.append(g.op("Concat", [f"past_key_values.{layer}.{name}", x], f"{pre}/{name}_cache", [f"present.{layer}.{name}"], axis=2)[0])
        kt = g.one("Transpose", [present[0]], f"{pre}/key_t", perm=[0, 1, 3, 2])
        scores = g.one("Add", [g.one("MatMul", [q, kt], f"{pre}/scores"), mask], f"{pre}/masked")
        probs = g.one("Softmax", [scores], f"{pre}/softmax", axis=-1)
        out = g.one("MatMul", [probs, present[1]], f"{pre}/context")  # [B, kv, G*S, d]
        out = g.one("Reshape", [out, self._shape_const("attn/ctx_groups", [0, 0, group, -1, d])], f"{pre}/context_groups")
        out = g.one("Transpose", [out], f"{pre}/context_transpose", perm=[0, 3, 1, 2, 4])  # [B, S, kv, G, d]
        return g.one("Reshape", [out, self._shape_const("attn/ctx_rows", [0, 0, -1])], f"{pre}/context_rows")

    def _static_attention_inputs(self) -> None:
        """Once per run of the fixed-cache graph (one token, a cache of L rows): `attention_mask` [1, L]
        is 1 on the cached rows, and the additive mask [1, 1, 1, L + 1] opens them and the new token
        (appended last); `position_ids` [1, 1] to int64 for RotaryEmbedding. The inputs are int32: a
        graph captured by onnxruntime-web's WebGPU provider (1.30) replays with the values its int64
        inputs had when it was captured (docs/client.md)."""
        g = self.g
        g.op("Cast", ["position_ids"], "attn/position_cast", ["attn/position_ids"], to=TensorProto.INT64)
        keep = g.one("Cast", ["attention_mask"], "attn/keep", to=TensorProto.FLOAT)  # [1, L]
        neg = self._scalar("attn/masked", np.array(-1e9, np.float32))
        closed = g.one("Mul", [g.one("Sub", [self._scalar("attn/one_f", np.array(1.0, np.float32)), keep], "attn/drop"), neg], "attn/padding")
        row = g.one("Concat", [closed, g.const("attn/new_row", np.zeros((1, 1), np.float32))], "attn/with_new", axis=1)  # [1, L + 1]
        g.op("Unsqueeze", [row, g.const("attn/axes12", np.array([1, 2], np.int64))], "attn/mask_rows", ["attn/mask_grouped"])

    def _shape_const(self, name: str, values: list[int]) -> str:
        return self._scalar(name, np.array(values, np.int64))

    def _attn_scale(self) -> float:
        return self.s.attn_scale if self.s.attn_scale is not None else 1.0 / np.sqrt(self.s.head_dim)

    def _qk_norm(self, qkv: str, layer: int) -> str:
        """Gemma: RMSNorm over each head of q and of k (before the rotary embedding), v as it is."""
        if not self.spec.qk_norm:
            return qkv
        g, s = self.g, self.s
        pre = f"model.layers.{layer}.self_attn"
        h, kv, d = s.heads, s.kv_heads, s.head_dim
        q, k, v = g.op("Split", [qkv, self._shape_const("attn/split_q_k_v", [h * d, kv * d, kv * d])], f"{pre}/split_qkv", 3, axis=-1)
        normed = []
        for name, x, gamma in (("q", q, self.w.q_norm[layer]), ("k", k, self.w.k_norm[layer])):
            x = g.one("Reshape", [x, self._shape_const("attn/per_head", [0, 0, -1, d])], f"{pre}/{name}_per_head")
            x = g.one("SimplifiedLayerNormalization", [x, g.const(f"{pre}.{name}_norm.weight", gamma)], f"{pre}/{name}_norm",
                      axis=-1, epsilon=s.rms_eps, stash_type=1)
            normed.append(g.one("Reshape", [x, self._shape_const("attn/heads_joined", [0, 0, -1])], f"{pre}/{name}_joined"))
        return g.one("Concat", [*normed, v], f"{pre}/qkv_normed", axis=-1)

    def _post_norm(self, x: str, norms: list[np.ndarray], layer: int, label: str) -> str:
        """Gemma's norm of a block's output before it joins the residual (identity for Llama)."""
        if not self.spec.sandwich_norms:
            return x
        name = f"model.layers.{layer}.{label}"
        return self.g.one("SimplifiedLayerNormalization", [x, self.g.const(f"{name}.weight", norms[layer])], f"{name}/norm",
                          axis=-1, epsilon=self.s.rms_eps, stash_type=1)

    def _activation(self, gate: str, layer: int) -> str:
        g, pre = self.g, f"model.layers.{layer}"
        if self.spec.activation == "gelu_tanh":
            return g.one("FastGelu", [gate], f"{pre}/mlp.gelu_tanh", MS)  # 0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³)))
        return g.one("Mul", [gate, g.one("Sigmoid", [gate], f"{pre}/mlp.sigmoid")], f"{pre}/mlp.silu")

    def build(self) -> onnx.ModelProto:
        g, s = self.g, self.s
        self._build_block_diagonals()
        cos, sin = _rotary_caches(s.head_dim, s.rope_theta, self.max_positions)
        cos, sin = g.const("attn/cos_cache", cos), g.const("attn/sin_cache", sin)
        local_cos, local_sin = cos, sin
        if s.local_layers and s.rope_local_theta is not None and s.rope_local_theta != s.rope_theta:
            local_cos, local_sin = _rotary_caches(s.head_dim, s.rope_local_theta, self.max_positions)
            local_cos, local_sin = g.const("attn/cos_cache_local", local_cos), g.const("attn/sin_cache_local", local_sin)
        if self.attention == "plain":
            self._plain_attention_inputs()
        elif self.attention == "static":
            self._static_attention_inputs()
        else:
            # Lengths for GroupQueryAttention: each row's attended length - 1, and the total length.
            lengths = g.one("ReduceSum", ["attention_mask", g.const("attn/axis1", np.array([1], np.int64))], "attn/mask_sum", keepdims=0)
            seqlens = g.one("Cast", [g.one("Sub", [lengths, g.const("attn/one", np.array(1, np.int64))], "attn/minus_one")],
                            "attn/seqlens_k", to=TensorProto.INT32)
            total = g.one("Gather", [g.one("Shape", ["attention_mask"], "attn/mask_shape"), g.const("attn/index1", np.array(1, np.int64))],
                          "attn/total_gather", axis=0)
            total = g.one("Cast", [total], "attn/total_sequence_length", to=TensorProto.INT32)

        h, _ = self._embedding()
        if self.doubled:
            h = g.one("Concat", [h, h], "emb/twice", axis=-1)
        residual = h
        normed = g.one("SimplifiedLayerNormalization", [h, g.const("model.layers.0.input_layernorm.weight", self._norm_weight(self.w.attn_norm[0]))],
                       "model.layers.0/input_layernorm", axis=-1, epsilon=s.rms_eps, stash_type=1)
        for i in range(s.layers):
            pre = f"model.layers.{i}"
            qkv = self._qk_norm(self.linear(normed, i, QKV), i)
            local = i in s.local_layers
            layer_cos, layer_sin = (local_cos, local_sin) if local else (cos, sin)
            if self.attention == "static" and local:
                raise ValueError("the fixed-cache graph has no local (sliding-window) layers yet")
            if self.attention in ("plain", "static"):
                attn = self._plain_attention(qkv, i, layer_cos, layer_sin, "attn/mask_local_grouped" if local else "attn/mask_grouped")
            else:
                # GroupQueryAttention's local_window_size counts the keys a query sees, itself included.
                window = {"local_window_size": s.sliding_window} if local else {}
                attn = g.op("GroupQueryAttention", [qkv, "", "", f"past_key_values.{i}.key", f"past_key_values.{i}.value", seqlens, total,
                                                    layer_cos, layer_sin],
                            f"{pre}/GroupQueryAttention", [f"{pre}/attn", f"present.{i}.key", f"present.{i}.value"], MS,
                            num_heads=2 * s.heads if self.doubled else s.heads, kv_num_heads=s.kv_heads, do_rotary=1, rotary_interleaved=0,
                            scale=float(self._attn_scale()), **window)[0]
            o = self._post_norm(self.linear(attn, i, ("self_attn.o_proj",)), self.w.post_attn_norm, i,
                                "post_attention_layernorm")
            ffn_label = "pre_feedforward_layernorm" if self.spec.sandwich_norms else "post_attention_layernorm"
            normed, _, _, residual = g.op("SkipSimplifiedLayerNormalization", [o, residual, g.const(f"{pre}.{ffn_label}.weight", self._norm_weight(self.w.ffn_norm[i]))],
                                          f"{pre}/{ffn_label}", [f"{pre}/ln2", "", "", f"{pre}/resid2"], MS, epsilon=s.rms_eps)
            gate_up = self.linear(normed, i, GATE_UP)
            gate, up = g.op("Split", [gate_up], f"{pre}/mlp.split", 2, axis=-1, num_outputs=2)
            act = self._activation(gate, i)
            down = self.linear(g.one("Mul", [act, up], f"{pre}/mlp.gated"), i, ("mlp.down_proj",))
            down = self._post_norm(down, self.w.post_ffn_norm, i, "post_feedforward_layernorm")
            if i + 1 < s.layers:
                gamma, label = self.w.attn_norm[i + 1], f"model.layers.{i + 1}.input_layernorm"
            else:
                gamma, label = self.w.final_norm, "model.norm"
            normed, _, _, residual = g.op("SkipSimplifiedLayerNormalization", [down, residual, g.const(f"{label}.weight", self._norm_weight(gamma))],
                                          f"{label}/SkipSimplifiedLayerNormalization", [f"{label}/out", "", "", f"{label}/resid"], MS,
                                          epsilon=s.rms_eps)
        if self.doubled:
            normed = g.one("Slice", [normed, self._shape_const("head/start", [0]), self._shape_const("head/end", [s.hidden]),
                                     self._shape_const("head/axis", [-1])], "head/first_copy")
        self._head(normed)

        f32, i64 = TensorProto.FLOAT, TensorProto.INT64
        kv = ["batch", s.kv_heads, "past_sequence_length", s.head_dim]
        ids_dims, mask_dims = ["batch", "sequence_length"], ["batch", "total_sequence_length"]
        present_dims = ["batch", s.kv_heads, "total_sequence_length", s.head_dim]
        if self.attention == "static":
            # One token per run over a cache of fixed length; `present.*` is the new row only.
            kv, present_dims = [1, s.kv_heads, self.cache_length, s.head_dim], [1, s.kv_heads, 1, s.head_dim]
            ids_dims, mask_dims = [1, 1], [1, self.cache_length]
        index = TensorProto.INT32 if self.attention == "static" else i64
        inputs = [helper.make_tensor_value_info("input_ids", index, ids_dims),
                  helper.make_tensor_value_info("attention_mask", index, mask_dims)]
        if self.attention == "static":
            inputs.append(helper.make_tensor_value_info("position_ids", index, [1, 1]))
        if self.index:
            inputs.append(helper.make_tensor_value_info("R", f32, [len(self.index), self.branch.rank, self.branch.rank]))
        outputs = [helper.make_tensor_value_info("logits", f32, [*ids_dims, s.vocab])]
        for i in range(s.layers):
            for kind in ("key", "value"):
                inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", f32, kv))
                outputs.append(helper.make_tensor_value_info(f"present.{i}.{kind}", f32, present_dims))
        graph = helper.make_graph(g.nodes, "loraxs-client", inputs, outputs, g.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS, 1)],
                                  producer_name="loraxs-edge", ir_version=IR_VERSION)
        return model


def build_client_graph(weights: LlamaWeights, branch: Branch | None, max_positions: int | None = None,
                       q4_matmul: str = "nbits", accuracy_level: int = 0, attention: str = "gqa",
                       cache_length: int | None = None, head: str = "matmul", dequantize: str = "session",
                       gather_r: bool | None = None, doubled: bool = False) -> onnx.ModelProto:
    """The decoder graph; `branch` None leaves the adapter out (no `R` input: the plain base model).
    Q4 weights run as MatMulNBits (`q4_matmul="nbits"`, with `accuracy_level`) or as fp32 MatMuls
    whose matrices onnxruntime folds from the 4-bit blocks at session start (`"folded"`); attention
    is GroupQueryAttention (`"gqa"`) or plain ops (`"plain"`, the WebGPU graph). A Q8 output head
    (SmolLM2's tied Q8_0 embedding) runs as MatMul on a transposed fp32 copy (`head="matmul"`, the
    faster in onnxruntime-web's WASM) or as Gemm(transB) on the table as stored (`"gemm"`, the
    faster on onnxruntime CPU), both folded from the 8-bit codes at session start, or as an 8-bit
    MatMulNBits on the codes themselves (`"nbits"`: int8 kernels, onnxruntime CPU's fastest;
    `_head_nbits`). `dequantize="run"` rebuilds the folded weights on every run instead of once
    (`_codes_to_float`). `gather_r` takes R's per-layer blocks with a Gather each instead of one Split
    (WebGPU binds every Split output as a storage buffer); by default the plain and static graphs do.
    `doubled` carries the residual stream twice so that each Q4_1 offset rides inside its MatMulNBits
    (`_linear_doubled`): fewer kernels a token, four times the 4-bit weights in memory."""
    return ClientGraphBuilder(weights, branch, max_positions, q4_matmul, accuracy_level, attention, cache_length, head,
                              dequantize, gather_r, doubled).build()
