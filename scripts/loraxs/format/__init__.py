"""The adapter file (docs/adapter-format.md), Python side: mirrors src/format/, file for file.

The same checks in the same order with the same error codes, and a writer whose output is byte
for byte what `encodeAdapter` writes. Data goes through the official `safetensors` library
(`safetensors.numpy.save` writes it, `safetensors.deserialize` reads it); the header is
validated here first so the library's own errors never reach callers.

| module | mirrors (src/format/) | what |
|---|---|---|
| limits | limits.ts | named limits |
| errors | errors.ts | ADAPTER_ERROR_CODES, AdapterFormatError, fail |
| show | show.ts | values as short JSON for messages |
| dtype | dtype.ts | stored dtypes and their sizes |
| adapter_types | types.ts | Adapter, AdapterHead, AdapterExpectations |
| strict_json | json.ts | the strict JSON reader of headers |
| header | header.ts | TENSOR_ORDER, the writer's header text |
| metadata | metadata.ts | metadata keys and the rule for each value |
| read_header, read_metadata, read_entries, layout, read_tensor | read-*.ts, layout.ts | the reader's checks, in order |
| check_expectations | check-expectations.ts | an adapter against the model's expectations |
| decode | decode.ts | decode_adapter, load_adapter |
| encode | encode.ts | encode_adapter, save_adapter |
"""

from __future__ import annotations

from .adapter_types import Adapter, AdapterExpectations, AdapterHead
from .decode import decode_adapter, load_adapter
from .dtype import DTYPE_BYTES, DTYPES
from .encode import encode_adapter, save_adapter
from .errors import ADAPTER_ERROR_CODES, AdapterFormatError
from .header import TENSOR_ORDER
from .limits import (
    HEADER_PREFIX_BYTES,
    MAX_ADAPTER_BYTES,
    MAX_CLASSES,
    MAX_HEADER_BYTES,
    MAX_HIDDEN,
    MAX_LABEL_BYTES,
    MAX_MODEL_ID_BYTES,
    MAX_MODULES,
    MAX_NOTE_BYTES,
    MAX_RANK,
)
from .metadata import FORMAT, FORMAT_VERSION, METADATA_KEYS, OPTIONAL_KEYS, SOURCES

__all__ = [
    "ADAPTER_ERROR_CODES",
    "DTYPES",
    "DTYPE_BYTES",
    "FORMAT",
    "FORMAT_VERSION",
    "HEADER_PREFIX_BYTES",
    "MAX_ADAPTER_BYTES",
    "MAX_CLASSES",
    "MAX_HEADER_BYTES",
    "MAX_HIDDEN",
    "MAX_LABEL_BYTES",
    "MAX_MODEL_ID_BYTES",
    "MAX_MODULES",
    "MAX_NOTE_BYTES",
    "MAX_RANK",
    "METADATA_KEYS",
    "OPTIONAL_KEYS",
    "SOURCES",
    "TENSOR_ORDER",
    "Adapter",
    "AdapterExpectations",
    "AdapterFormatError",
    "AdapterHead",
    "decode_adapter",
    "encode_adapter",
    "load_adapter",
    "save_adapter",
]
