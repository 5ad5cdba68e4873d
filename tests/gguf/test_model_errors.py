"""Every bad model file gets a specific error naming the file and what was expected."""

from __future__ import annotations

import struct

import gguf
import numpy as np
import pytest

from conftest import MINILM_FILE, NOMIC
from gguf_edit import rewrite
from lodevec import errors
from lodevec.gguf import GGUFModel

Q4 = NOMIC / "tiny-nomic-v1.5.Q4_K_M.gguf"
F16 = NOMIC / "tiny-nomic-v1.5.f16.gguf"
VT = gguf.GGUFValueType


def test_identity_rewrite_still_loads(tmp_path):
    """The editing helper itself produces valid files (so the cases below test one change)."""
    out = rewrite(Q4, tmp_path / "same.gguf")
    m = GGUFModel.open(out)
    assert m.config == GGUFModel.open(Q4).config


def test_not_gguf(tmp_path):
    p = tmp_path / "notes.gguf"
    p.write_text("hello, I am a text file\n")
    with pytest.raises(errors.NotGGUFError, match=r"notes\.gguf: not a GGUF file: starts with b'hell'"):
        GGUFModel.open(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    with pytest.raises(errors.NotGGUFError, match="empty.gguf"):
        GGUFModel.open(p)


def test_missing_file(tmp_path):
    with pytest.raises(errors.ModelFileError, match="nope.gguf: no such file"):
        GGUFModel.open(tmp_path / "nope.gguf")


def test_directory(tmp_path):
    with pytest.raises(errors.ModelFileError, match="is a directory"):
        GGUFModel.open(tmp_path)


def test_unsupported_version(tmp_path):
    data = bytearray(Q4.read_bytes()[:4096])
    data[4:8] = struct.pack("<I", 7)
    p = tmp_path / "v7.gguf"
    p.write_bytes(bytes(data))
    with pytest.raises(errors.UnsupportedVersionError, match=r"v7\.gguf: GGUF version 7 is not supported; expected one of \(2, 3\)"):
        GGUFModel.open(p)


@pytest.mark.parametrize("keep", [6, 24, 200, 5000, 700_000, -1000])
def test_truncated(tmp_path, keep):
    data = Q4.read_bytes()
    p = tmp_path / "cut.gguf"
    p.write_bytes(data[:keep])
    with pytest.raises(errors.TruncatedFileError, match=r"cut\.gguf: truncated"):
        GGUFModel.open(p)


def test_unknown_architecture(tmp_path):
    p = rewrite(Q4, tmp_path / "llama.gguf", kv={"general.architecture": ("llama", VT.STRING)})
    with pytest.raises(errors.UnsupportedArchitectureError,
                       match=r"llama\.gguf: architecture 'llama' \(key general\.architecture\) is not supported; expected one of nomic-bert, bert"):
        GGUFModel.open(p)


def test_missing_metadata_key(tmp_path):
    p = rewrite(Q4, tmp_path / "nokey.gguf", drop_kv=["nomic-bert.embedding_length"])
    with pytest.raises(errors.MetadataError, match="nokey.gguf: metadata key nomic-bert.embedding_length is missing"):
        GGUFModel.open(p)


def test_wrong_metadata_type(tmp_path):
    p = rewrite(Q4, tmp_path / "badtype.gguf", kv={"nomic-bert.block_count": ("two", VT.STRING)})
    with pytest.raises(errors.MetadataError, match="metadata key nomic-bert.block_count is str 'two'; expected int"):
        GGUFModel.open(p)


def test_missing_tensor(tmp_path):
    p = rewrite(Q4, tmp_path / "miss.gguf", drop_tensors=["blk.1.ffn_gate.weight"])
    with pytest.raises(errors.MissingTensorError,
                       match=r"miss\.gguf: tensor blk\.1\.ffn_gate\.weight is missing; the nomic-bert graph needs it with shape \(512, 256\)"):
        GGUFModel.open(p)


def test_misshaped_tensor(tmp_path):
    bad = np.zeros((3, 256), dtype=np.float32)
    p = rewrite(Q4, tmp_path / "shape.gguf", tensors={"token_embd_norm.weight": (bad, None, None)})
    with pytest.raises(errors.TensorShapeError,
                       match=r"shape\.gguf: tensor token_embd_norm\.weight has shape \(3, 256\); expected \(256\)"):
        GGUFModel.open(p)


def test_unsupported_tensor_type(tmp_path):
    # IQ4_NL blocks: a real GGML type our kernels do not compute with
    src = GGUFModel.open(Q4).tensors["blk.0.attn_output.weight"]
    raw = np.zeros((256, 256 // 32 * 18), dtype=np.uint8)
    p = rewrite(Q4, tmp_path / "iq.gguf",
                tensors={src.name: (raw, list(raw.shape), gguf.GGMLQuantizationType.IQ4_NL)})
    with pytest.raises(errors.UnsupportedTensorTypeError,
                       match=r"iq\.gguf: tensor blk\.0\.attn_output\.weight is stored as IQ4_NL; supported types are F32, F16"):
        GGUFModel.open(p)


def test_bert_missing_position_table(tmp_path):
    p = rewrite(MINILM_FILE, tmp_path / "nopos.gguf", drop_tensors=["position_embd.weight"])
    with pytest.raises(errors.MissingTensorError, match="position_embd.weight is missing; the bert graph"):
        GGUFModel.open(p)


def test_errors_are_input_errors():
    """The CLI maps these to exit code 2 through one base class."""
    for cls in (errors.NotGGUFError, errors.TruncatedFileError, errors.MissingTensorError,
                errors.UnsupportedTensorTypeError, errors.UnsupportedArchitectureError):
        assert issubclass(cls, errors.InputError)


@pytest.mark.parametrize("seed", range(20))
def test_random_corruption_never_crashes(tmp_path, seed):
    """Flipped bytes in the header/metadata give a ModelFileError or a loadable file, never a crash."""
    rng = np.random.default_rng(seed)
    data = bytearray(F16.read_bytes())
    for pos in rng.integers(8, 1_000_000, size=8):
        data[pos] = rng.integers(0, 256)
    p = tmp_path / "corrupt.gguf"
    p.write_bytes(bytes(data))
    try:
        GGUFModel.open(p)
    except errors.ModelFileError as e:
        assert "corrupt.gguf" in str(e)


def test_encoder_threads_are_its_own():
    """Building an Encoder with threads= does not change the process's kernel threads,
    and an unknown device is a clear error."""
    from lodevec import kernels
    from lodevec.embedding import Encoder

    before = kernels.get_num_threads()
    enc = Encoder.from_gguf(NOMIC / "tiny-nomic-v1.5.Q8_0.gguf", threads=1)
    assert kernels.get_num_threads() == before
    assert enc.backend.threads == 1 and enc.info["threads"] == 1 and enc.info["device"] == "cpu"
    with pytest.raises(ValueError, match="threads must be >= 1"):
        Encoder.from_gguf(NOMIC / "tiny-nomic-v1.5.Q8_0.gguf", threads=0)
    with pytest.raises(ValueError, match=r"device 'cuda' is not available; choose one of cpu"):
        Encoder.from_gguf(NOMIC / "tiny-nomic-v1.5.Q8_0.gguf", device="cuda")
