"""Training data of the denoiser: simulated odd/even pairs with their clean image, and pairs
collected from a processing folder (docs/denoising_training.md)."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cryowarp.core.resize import bin_average, rescale
from cryowarp.errors import InvalidValuesError, MissingFileError
from cryowarp.io.mrc import read_mrc
from cryowarp.preprocess.denoise.deconvolution import DENOISER_INPUT_DECONVOLUTION, deconvolve
from cryowarp.preprocess.denoise.n2n_data import SkippedItem, collect_training_pairs
from cryowarp.simulate.odd_even_pairs import OddEvenSimulationSettings, simulated_pairs

# A small population: 160² at 4 Å/px rendered at 2 Å, two small species, no artefacts.
SMALL = OddEvenSimulationSettings(
    field_px=(160, 160),
    n_species_pool=2,
    max_species_per_micrograph=2,
    mass_range_kda=(100.0, 300.0),
    carbon_edge_fraction=0.0,
    artefact_fraction=0.0,
)


@pytest.fixture(scope="module")
def small_pairs() -> list[Any]:
    return simulated_pairs(2, seed=11, settings=SMALL)


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a.double().flatten() - a.double().mean()
    b = b.double().flatten() - b.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_odd_even_noise_is_independent_and_signal_is_shared(small_pairs: list[Any]) -> None:
    for pair in small_pairs:
        n = pair.clean.numel()
        noise_odd, noise_even = pair.odd - pair.clean, pair.even - pair.clean
        # Independent noise: the sample correlation of the two noise images has a standard
        # deviation of 1/√n around 0; allow 4 of them.
        assert abs(_corr(noise_odd, noise_even)) < 4 / math.sqrt(n)
        # Poisson noise at half the dose each: variance = clean / (dose/2 · pixel²) per pixel.
        counts_per_intensity = 0.5 * pair.dose_e_per_a2 * pair.pixel_size_a**2
        expected_var = float(pair.clean.double().mean()) / counts_per_intensity
        for noise in (noise_odd, noise_even):
            assert float(noise.double().var()) == pytest.approx(expected_var, rel=0.05)
            assert abs(float(noise.double().mean())) < 4 * math.sqrt(expected_var / n)
        # Both halves see the same specimen: their correlation is that of signal over signal
        # plus noise, var(clean) / (var(clean) + var(noise)), to sampling accuracy.
        signal_var = float(pair.clean.double().var())
        predicted = signal_var / (signal_var + expected_var)
        assert _corr(pair.odd, pair.even) == pytest.approx(predicted, abs=0.03)
        # ... and clearly above what noise alone gives: binned 4 × 4 (signal up, noise down),
        # the halves correlate far beyond the 1/√n spread of independent images.
        binned_odd, binned_even = (bin_average(x, 4, ndim=2) for x in (pair.odd, pair.even))
        assert _corr(binned_odd, binned_even) > 8 / math.sqrt(binned_odd.numel())


def test_simulated_pairs_are_reproducible_and_seed_dependent(small_pairs: list[Any]) -> None:
    again = simulated_pairs(1, seed=11, settings=SMALL)[0]
    other = simulated_pairs(1, seed=12, settings=SMALL)[0]
    assert torch.equal(again.odd, small_pairs[0].odd)
    assert torch.equal(again.clean, small_pairs[0].clean)
    assert again.ctf == small_pairs[0].ctf
    assert _corr(other.clean, again.clean) < 0.5
    assert again.odd.shape == (160, 160)
    assert again.pixel_size_a == 4.0
    assert again.ctf.pixel_size_a == 4.0


def test_phase_plate_micrographs_have_a_phase_shift_near_focus() -> None:
    settings = SMALL.model_copy(update={"phase_plate_fraction": 1.0, "field_px": (64, 64)})
    pair = simulated_pairs(1, seed=3, settings=settings)[0]
    low, high = settings.phase_shift_range_deg
    assert low <= pair.ctf.phase_shift_deg <= high
    assert pair.ctf.defocus_um <= settings.phase_plate_defocus_range_um[1]


# -- collecting from a processing folder ----------------------------------------------------


def _deconvolved_at_4a(path: Path, ctf: Any) -> torch.Tensor:
    data, header = read_mrc(path)
    image = torch.from_numpy(np.array(data, np.float32))
    pixel = float(header.voxel_size_a[0])
    shape = tuple(round(n * pixel / 4.0) for n in image.shape)
    cropped = rescale(image, shape)
    achieved = pixel * image.shape[1] / shape[1]
    return deconvolve(
        cropped, pixel_size_a=achieved, ctf=ctf, settings=DENOISER_INPUT_DECONVOLUTION
    )


def test_collects_a_pair_at_4a_with_one_normalisation_for_both_halves(tiny_processed: Any) -> None:
    pairs = collect_training_pairs(tiny_processed.folder, min_examples=1)
    assert len(pairs) == 1
    pair = pairs[0]
    assert pair.name == tiny_processed.movie.stem
    assert pair.pixel_size_a == pytest.approx(4.0, rel=1e-6)
    assert pair.odd.shape == pair.even.shape == (96, 96)  # 256 px × 1.5 Å / 4 Å
    average = (pair.odd + pair.even) / 2
    assert float(average.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(average.std(unbiased=False)) == pytest.approx(1.0, abs=1e-5)
    # One scale for both halves (not each normalised on its own): each half has the noise of
    # half the frames, so it varies more than the average.
    assert float(pair.odd.std()) > 1.01
    assert float(pair.even.std()) > 1.01
    # Undoing the normalisation gives the half Fourier-cropped to 4 Å and deconvolved with
    # the item's CTF.
    assert pair.odd_path is not None
    assert pair.even_path is not None
    for half, path in ((pair.odd, pair.odd_path), (pair.even, pair.even_path)):
        expected = _deconvolved_at_4a(path, tiny_processed.ctf)
        torch.testing.assert_close(pair.scale.undo(half), expected, atol=1e-4, rtol=1e-4)


def _copy_folder(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("aligned"))
    return target


def _clone_items(folder: Path, stem: str, names: list[str]) -> None:
    """Replace item ``stem`` by copies named ``names`` whose movies no longer exist (so their
    time is the metadata's modification time)."""
    document = json.loads((folder / "motion" / f"{stem}.json").read_text())
    for name in names:
        files = {}
        for key, relative in document["files"].items():
            if relative is None:
                files[key] = None
                continue
            new_relative = relative.replace(stem, name)
            if (folder / relative).is_file() and key != "metadata":
                shutil.copyfile(folder / relative, folder / new_relative)
            files[key] = new_relative
        shutil.copyfile(folder / "ctf" / f"{stem}_ctf.json", folder / "ctf" / f"{name}_ctf.json")
        clone = {**document, "files": files, "movie": str(folder / "gone" / f"{name}.mrc")}
        (folder / "motion" / f"{name}.json").write_text(json.dumps(clone))
    (folder / "motion" / f"{stem}.json").unlink()


def test_newest_items_come_first_up_to_max_examples(tiny_processed: Any, tmp_path: Path) -> None:
    folder = _copy_folder(tiny_processed.folder, tmp_path / "proc")
    _clone_items(folder, tiny_processed.movie.stem, ["item_a", "item_b", "item_c"])
    for age_s, name in ((300, "item_a"), (100, "item_b"), (200, "item_c")):
        stamp = 1_700_000_000 - age_s
        os.utime(folder / "motion" / f"{name}.json", (stamp, stamp))
    pairs = collect_training_pairs(folder, max_examples=2, min_examples=2)
    assert [p.name for p in pairs] == ["item_b", "item_c"]
    torch.testing.assert_close(pairs[0].odd, pairs[1].odd)  # the same data, cloned


def test_items_without_odd_even_averages_give_a_typed_error(
    tiny_processed: Any, tmp_path: Path
) -> None:
    folder = _copy_folder(tiny_processed.folder, tmp_path / "proc")
    shutil.rmtree(folder / "average" / "odd")
    skipped: list[SkippedItem] = []
    with pytest.raises(MissingFileError, match="odd/even half-averages") as info:
        collect_training_pairs(folder, min_examples=1, on_skipped=skipped.append)
    assert "cryowarp motion" in str(info.value)
    assert [s.name for s in skipped] == [tiny_processed.movie.stem]
    assert "odd/even" in skipped[0].reason


def test_too_few_examples_give_the_count_and_the_minimum(
    tiny_processed: Any, tmp_path: Path
) -> None:
    with pytest.raises(InvalidValuesError, match=r"only 1 usable .* at least 3"):
        collect_training_pairs(tiny_processed.folder, min_examples=3)
    # An item without a CTF estimate cannot be deconvolved: skipped, with the reason.
    folder = _copy_folder(tiny_processed.folder, tmp_path / "proc")
    (folder / "ctf" / f"{tiny_processed.movie.stem}_ctf.json").unlink()
    skipped: list[SkippedItem] = []
    with pytest.raises(InvalidValuesError, match=r"only 0 usable .* at least 1"):
        collect_training_pairs(folder, min_examples=1, on_skipped=skipped.append)
    assert len(skipped) == 1
    assert "CTF" in skipped[0].reason


def test_a_folder_without_processed_items_is_a_missing_file_error(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="no processed items"):
        collect_training_pairs(tmp_path, min_examples=1)
