import pytest
import torch

from transformer_mt.model import checkpoint as ckpt


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt.save_atomic({"model": {"w": torch.ones(2)}, "config": {}}, path)
    before = path.read_bytes()

    def disk_full(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        ckpt.save_atomic({"model": {"w": torch.zeros(2)}, "config": {}}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_folder_in_the_way_is_an_error_and_leaves_no_temporary(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(IsADirectoryError):
        ckpt.save_atomic({"model": {}, "config": {}}, tmp_path / "checkpoints")
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoints"]


def test_a_failed_copy_leaves_no_temporary(tmp_path):
    source = tmp_path / "step.pt"
    ckpt.save_atomic({"model": {}, "config": {}}, source)
    (tmp_path / "last.pt").mkdir()
    with pytest.raises(OSError):
        ckpt.copy_atomic(source, tmp_path / "last.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "step.pt"]


def test_a_checkpoint_in_a_newer_format_is_refused_in_one_line(tmp_path):
    path = tmp_path / "last.pt"
    ckpt.save_atomic({"model": {}, "config": {}}, path)
    assert ckpt.load(path)["format_version"] == ckpt.FORMAT_VERSION
    torch.save({"model": {}, "config": {}, "format_version": ckpt.FORMAT_VERSION + 1}, path)
    with pytest.raises(ckpt.CheckpointError, match=rf"format {ckpt.FORMAT_VERSION + 1}, which this transformer-mt "
                                                   rf"\(format {ckpt.FORMAT_VERSION}\) cannot read"):
        ckpt.load(path)
    torch.save({"model": {}, "config": {}}, path)
    with pytest.raises(ckpt.CheckpointError, match="is not a transformer-mt checkpoint"):
        ckpt.load(path)
