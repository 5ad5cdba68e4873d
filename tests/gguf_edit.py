"""Write altered copies of a GGUF fixture (for error-path tests), with gguf's own writer."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np


def rewrite(src: Path, dst: Path, *, kv: dict | None = None, drop_kv=(), drop_tensors=(),
            tensors: dict | None = None) -> Path:
    """Copy ``src`` to ``dst`` changing metadata and tensors.

    Args:
        kv: key -> (value, GGUFValueType) to set or replace.
        drop_kv: keys to leave out.
        drop_tensors: tensor names to leave out.
        tensors: name -> (ndarray, byte shape | None, raw_dtype | None) to replace or add.
    """
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    if kv and "general.architecture" in kv:
        arch = kv["general.architecture"][0]
    w = gguf.GGUFWriter(dst, arch)
    skip = {"general.architecture", "GGUF.version", "GGUF.tensor_count", "GGUF.kv_count",
            *drop_kv, *(kv or {})}
    for key, field in r.fields.items():
        if key in skip:
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, field.contents(), vtype, sub)
    for key, (value, vtype) in (kv or {}).items():
        if key != "general.architecture":
            w.add_key_value(key, value, vtype)
    replaced = dict(tensors or {})
    for t in r.tensors:
        if t.name in drop_tensors:
            continue
        if t.name in replaced:
            arr, shape, qtype = replaced.pop(t.name)
            w.add_tensor(t.name, arr, raw_shape=shape, raw_dtype=qtype)
        else:
            data = np.array(t.data)  # quantized: uint8 (rows, row_bytes), the byte shape
            qtype = gguf.GGMLQuantizationType(int(t.tensor_type))
            quant = data.dtype == np.uint8
            w.add_tensor(t.name, data, raw_shape=data.shape if quant else None,
                         raw_dtype=qtype if quant else None)
    for name, (arr, shape, qtype) in replaced.items():
        w.add_tensor(name, arr, raw_shape=shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst
