"""The JSON header the writer emits (src/format/header.ts)."""

from __future__ import annotations

import json

TENSOR_ORDER = ("R", "head.bias", "head.weight")  # file order of the official writer


def build_header_json(metadata: list[tuple[str, str]], entries: list[dict]) -> str:
    """The writer's header text, byte for byte what src/format/header.ts builds: compact JSON,
    `__metadata__` first, tensors in the given order, spaces up to a multiple of 8 bytes."""

    def s(x: str) -> str:
        return json.dumps(x, ensure_ascii=False)

    meta = ",".join(f"{s(k)}:{s(v)}" for k, v in metadata)
    out = '{"__metadata__":{' + meta + "}"
    for t in entries:
        shape = ",".join(str(d) for d in t["shape"])
        out += (
            f',{s(t["name"])}:{{"dtype":"{t["dtype"]}","shape":[{shape}],'
            f'"data_offsets":[{t["begin"]},{t["end"]}]}}'
        )
    out += "}"
    pad = (8 - len(out.encode("utf-8")) % 8) % 8
    return out + " " * pad
