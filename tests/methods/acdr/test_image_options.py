"""acdr-predict's `--channel` and `--pixel-size` (issue 23): a 2-channel image is refused without a
channel; with one, the grey checkpoint reads that channel, and the pixel size is recorded."""

from __future__ import annotations

import json

import numpy as np
import tifffile

from helpers import assert_one_line_error, tiny_checkpoint
from invrender.cli import main


def test_a_channel_of_a_two_channel_image(tmp_path, capsys):
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt")  # reads grey 32 x 32 pictures
    rng = np.random.default_rng(0)
    image = tmp_path / "two.tif"
    tifffile.imwrite(
        image, rng.random((2, 40, 48)).astype(np.float32), imagej=True, metadata={"axes": "CYX", "mode": "composite"}
    )
    out = tmp_path / "out"
    base = ["acdr-predict", str(image), "--checkpoint", str(checkpoint), "--device", "cpu", "-q", "--threads", "1"]
    code = main([*base, "--out", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, out, str(image), "axes CYX", "give --channel N (0 to 1)")
    code = main([*base, "--channel", "1", "--pixel-size", "0.5", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "manifest.json").read_text())["inputs"][0]["result"]
    assert result["pixel_size"] == [0.5, 0.5] and (out / "two.polygon.json").is_file()
