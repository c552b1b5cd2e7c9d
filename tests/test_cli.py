import pytest

from transformer_mt.cli import output_path, writing
from transformer_mt.errors import UserError


def test_output_path_refuses_a_folder_and_a_missing_folder(tmp_path):
    assert output_path("--output", str(tmp_path / "hyp.txt")) == tmp_path / "hyp.txt"
    with pytest.raises(UserError, match=r"^--output .* is a folder; name the file to write$"):
        output_path("--output", str(tmp_path))
    with pytest.raises(UserError, match=r"^--output .*/missing/hyp.txt: folder .*/missing does not exist$"):
        output_path("--output", str(tmp_path / "missing" / "hyp.txt"))


def test_a_failed_write_is_one_line_naming_the_flag(tmp_path):
    target = tmp_path / "gone" / "hyp.txt"
    with pytest.raises(UserError, match=r"^cannot write --output .*/gone/hyp.txt: No such file or directory$"):
        with writing("--output", target):
            target.write_text("x")
    with writing("--output", tmp_path / "hyp.txt"):  # a write that works passes through
        (tmp_path / "hyp.txt").write_text("x")
    assert (tmp_path / "hyp.txt").read_text() == "x"
