"""The demo job end to end: what it exports reconstructs the truth.

This is a convention check across layers: a wrong CTF sign, Euler convention, STAR column or
MRC axis order anywhere on the way breaks the FSC against the phantom.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cryowarp.io.mrc import read_mrc
from cryowarp.io.relion import read_particles
from cryowarp.pipeline.demo import DemoSettings, run_demo


@pytest.mark.slow
def test_demo_reconstructs_the_phantom_from_its_own_export(tmp_path: Path) -> None:
    lines: list[str] = []
    settings = DemoSettings(n_particles=400, box_size_px=32, pixel_size_a=3.0, snr=2.0)
    result = run_demo(tmp_path, settings, log=lines.append)
    # Nyquist is 6 Å; the phantom's blobs (sigma 1.5 px) carry little power beyond ~3 px.
    assert result.resolution_truth_a < 11.0
    assert result.resolution_halves_a < 11.0
    assert any("FSC" in line for line in lines)
    optics, table = read_particles(tmp_path / "particles.star")
    assert len(table) == 400
    assert optics[0].pixel_size_a == pytest.approx(3.0)
    stack, header = read_mrc(tmp_path / "particles.mrcs")
    assert stack.shape == (400, 32, 32)
    assert header.pixel_size_a == pytest.approx(3.0)
    half1, _ = read_mrc(tmp_path / "half1.mrc")
    assert np.isfinite(half1).all()


def test_demo_settings_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="extra"):
        DemoSettings.model_validate({"n_particles": 100, "pixelsize": 1.0})
    with pytest.raises(ValueError, match="greater than"):
        DemoSettings(pixel_size_a=-1.0)
