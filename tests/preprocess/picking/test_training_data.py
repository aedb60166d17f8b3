"""Generic BoxNet training data: simulated micrographs, their labels, the species pools and
the dataset files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pydantic
import pytest
import torch

from cryowarp.errors import CorruptFileError, MissingFileError
from cryowarp.pipeline import picking_training_data
from cryowarp.pipeline.picking_species_pool import (
    REAL_SPECIES_IN_SHARED_DATA,
    PoolSpecies,
    generic_species_pool,
    heldout_species_pool,
    parse_species_path,
    real_species,
)
from cryowarp.pipeline.picking_training_data import (
    build_generic_dataset,
    simulate_training_field,
    simulate_training_micrograph,
)
from cryowarp.preprocess.picking.labels import downsample_mask, load_labelled, save_labelled
from cryowarp.preprocess.picking.prepare import prepare_micrograph
from cryowarp.preprocess.picking.training_data import (
    GenericTrainingSettings,
    load_dataset,
    prepared_from_clean,
)
from cryowarp.simulate.ice import ice_mean_inner_potential_v
from cryowarp.simulate.species import PROTEIN_DENSITY_DA_PER_A3

# Small fields (96² at 8 Å = 192² at 4 Å) and three mid-size species keep every test fast.
SETTINGS = GenericTrainingSettings(
    micrograph_size_px=(96, 96),
    n_procedural_species=3,
    procedural_mass_range_kda=(200.0, 800.0),
    coverage_range=(0.15, 0.3),
)


@pytest.fixture(scope="module")
def pool() -> list[PoolSpecies]:
    return generic_species_pool(SETTINGS, seed=1)


def test_particles_sit_on_dark_blobs(pool: list[PoolSpecies]) -> None:
    settings = SETTINGS.model_copy(
        update={
            "phase_plate_fraction": 0.0,
            "artefact_fraction": 0.0,
            "defocus_range_um": (1.5, 3.0),  # below ~1 µm, 300 kDa are faint at 8 Å (realistic)
        }
    )
    for index in range(3):
        lm = simulate_training_micrograph(index, settings=settings, seed=1, species_pool=pool)
        assert lm.image.shape == (96, 96)
        assert lm.pixel_size_a == 8.0
        assert lm.positions_px.shape[0] >= 3
        assert set(lm.labels.unique().tolist()) == {0, 1}
        on = lm.image[lm.labels == 1]
        particle, background = float(on.mean()), float(lm.image[lm.labels == 0].mean())
        standard_error = float(on.std()) / on.numel() ** 0.5
        assert particle < background - max(0.2, 4 * standard_error), (index, particle)
        # Disks moved by half the field land on no particle in particular: no contrast there.
        moved = (lm.positions_px.round().long() + 48) % 96
        elsewhere = lm.image[moved[:, 1], moved[:, 0]]
        centres = lm.positions_px.round().long()
        assert float(lm.image[centres[:, 1], centres[:, 0]].mean()) < float(elsewhere.mean())


def test_artefact_labels_are_the_simulators_mask(pool: list[PoolSpecies]) -> None:
    settings = SETTINGS.model_copy(update={"artefact_fraction": 1.0, "max_aggregates": 1})
    found = 0
    for index in range(3):
        field = simulate_training_field(index, settings=settings, seed=2, species_pool=pool)
        lm = simulate_training_micrograph(index, settings=settings, seed=2, species_pool=pool)
        expected = downsample_mask(field.simulation.artefact_mask, (96, 96))
        assert torch.equal(lm.artefact_mask, expected)
        assert torch.equal(lm.labels == 2, expected)
        if int(expected.sum()) >= 20:
            found += 1
            # ethane, carbon and aggregates are dark (extra potential and amplitude loss)
            assert float(lm.image[expected].mean()) < float(lm.image[lm.labels == 0].mean()) - 1
    assert found >= 2


def test_same_seed_same_bytes(pool: list[PoolSpecies], tmp_path: Path) -> None:
    a = simulate_training_micrograph(4, settings=SETTINGS, seed=3, species_pool=pool)
    b = simulate_training_micrograph(4, settings=SETTINGS, seed=3, species_pool=pool)
    c = simulate_training_micrograph(5, settings=SETTINGS, seed=3, species_pool=pool)
    assert a.source == b.source
    assert a.source != c.source
    file_a = save_labelled(a, tmp_path / "a.npz").read_bytes()
    assert file_a == save_labelled(b, tmp_path / "b.npz").read_bytes()
    assert file_a != save_labelled(c, tmp_path / "c.npz").read_bytes()


def test_fast_path_matches_preparing_a_recorded_image(pool: list[PoolSpecies]) -> None:
    """Poisson counts at 8 Å after the Fourier crop ≡ counts at 4 Å, then prepare_micrograph:
    same particle contrast and background noise in robust units."""
    settings = SETTINGS.model_copy(update={"phase_plate_fraction": 0.0, "artefact_fraction": 0.0})
    field = simulate_training_field(0, settings=settings, seed=4, species_pool=pool)
    lm = simulate_training_micrograph(0, settings=settings, seed=4, species_pool=pool)
    clean, dose = field.simulation.clean_micrograph, field.detected_dose_e_per_a2
    particle, background = lm.labels == 1, lm.labels == 0
    fast, full = [], []
    for k in range(6):
        g = torch.Generator().manual_seed(k)
        quick = prepared_from_clean(clean, pixel_size_a=4.0, dose_e_per_a2=dose, generator=g)
        counts = torch.poisson(clean.clamp(min=0) * dose * 4.0**2, generator=g)
        slow = prepare_micrograph(counts, pixel_size_a=4.0)
        assert quick.image.shape == slow.image.shape
        assert quick.pixel_size_xy_a == slow.pixel_size_xy_a
        for out, image in ((fast, quick.image), (full, slow.image)):
            out.append([float(image[particle].mean()), float(image[background].std())])
    fast_mean, full_mean = torch.tensor(fast).mean(0), torch.tensor(full).mean(0)
    assert float(fast_mean[0]) < -0.2
    assert torch.allclose(fast_mean, full_mean, rtol=0.08, atol=0.02), (fast_mean, full_mean)


def test_pools_are_disjoint_and_diameters_physical() -> None:
    train = generic_species_pool(SETTINGS, seed=0)
    heldout = heldout_species_pool(0, 3)
    assert all(s.name.startswith("train0_") for s in train)
    assert all(s.name.startswith("heldout0_") for s in heldout)
    sources = {s.source for s in train}
    assert not sources & {s.source for s in heldout}
    for entry in train + heldout:
        assert entry.species.pixel_size_a == 4.0
        assert not entry.real
        sphere_a = 2 * (3 * entry.mass_kda * 1000 / PROTEIN_DENSITY_DA_PER_A3 / (4 * math.pi)) ** (
            1 / 3
        )
        assert sphere_a <= entry.diameter_a <= 3 * sphere_a, entry.name
    assert all(200 <= s.mass_kda <= 800 for s in train)
    assert all(80 <= s.mass_kda <= 2000 for s in heldout)


def test_solvent_displacement_leaves_the_protein_ice_contrast() -> None:
    plain = heldout_species_pool(5, 1, displace_solvent=False)[0]
    displaced = heldout_species_pool(5, 1)[0]
    assert displaced.diameter_a == plain.diameter_a
    volume_a3 = plain.mass_kda * 1000 / PROTEIN_DENSITY_DA_PER_A3
    lost_v_a3 = (plain.species.integral_v_a3 - displaced.species.integral_v_a3) / volume_a3
    # V_ice × the body's volume, to the accuracy of the blurred voxel mask
    assert lost_v_a3 == pytest.approx(ice_mean_inner_potential_v(), rel=0.05)


def test_species_paths_with_pixel_size_overrides() -> None:
    assert parse_species_path("a/b.mrc:13.1") == (Path("a/b.mrc"), 13.1)
    assert parse_species_path("a/b.mrc") == (Path("a/b.mrc"), None)
    assert parse_species_path("C:odd/b.mrc") == (Path("C:odd/b.mrc"), None)


def test_real_species_from_shared_data(shared_data: Path) -> None:
    apoferritin, _, ribosome_50s, _ = (
        real_species(shared_data / p, pixel_size_a=4.0) for p in REAL_SPECIES_IN_SHARED_DATA
    )
    # Apoferritin's outer diameter is 120–130 Å; the 50S subunit's about 250 Å.
    assert 115 <= apoferritin.diameter_a <= 145
    assert apoferritin.real
    assert 220 <= ribosome_50s.diameter_a <= 290
    header_pixel = real_species(
        shared_data / REAL_SPECIES_IN_SHARED_DATA[2].removesuffix(":13.1"), pixel_size_a=4.0
    )
    assert header_pixel.diameter_a < ribosome_50s.diameter_a / 5  # header 1.0 Å: 13× too small


def test_dataset_is_written_once_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = SETTINGS.model_copy(
        update={"n_micrographs": 3, "micrograph_size_px": (48, 48), "n_procedural_species": 2}
    )
    calls: list[tuple[int, int]] = []
    files = build_generic_dataset(
        settings, seed=7, out_dir=tmp_path, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    pool = generic_species_pool(settings, seed=7)
    direct = simulate_training_micrograph(1, settings=settings, seed=7, species_pool=pool)
    assert torch.equal(load_labelled(files[1]).image, direct.image)
    manifest = json.loads(next(tmp_path.glob("generic_*.json")).read_text())
    assert [s["name"] for s in manifest["species"]] == [s.name for s in pool]
    assert manifest["seconds_per_micrograph"] > 0
    before = [f.read_bytes() for f in files]

    def no_pool(*args: object, **kwargs: object) -> None:
        raise AssertionError("the species pool was rebuilt for a complete dataset")

    monkeypatch.setattr(picking_training_data, "generic_species_pool", no_pool)
    calls.clear()
    again = build_generic_dataset(
        settings, seed=7, out_dir=tmp_path, progress=lambda d, t: calls.append((d, t))
    )
    assert again == files
    assert calls == [(3, 3)]
    monkeypatch.undo()
    files[2].write_bytes(before[2][:100])  # damaged: remade, identical to the first time
    build_generic_dataset(settings, seed=7, out_dir=tmp_path)
    assert [f.read_bytes() for f in files] == before
    other = build_generic_dataset(settings, seed=8, out_dir=tmp_path)
    assert set(other).isdisjoint(files)  # another seed, another hash

    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 broken")
    assert len(load_dataset(tmp_path)) == 6
    with pytest.raises(CorruptFileError):
        load_dataset(tmp_path, skip_damaged=False)
    with pytest.raises(MissingFileError):
        load_dataset(tmp_path / "absent")


def test_settings_are_validated_and_described() -> None:
    with pytest.raises(pydantic.ValidationError):
        GenericTrainingSettings(defocus_range_um=(4.0, 0.5))
    with pytest.raises(pydantic.ValidationError):
        GenericTrainingSettings(unknown=1)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        SETTINGS.n_micrographs = 5  # type: ignore[misc]
    fields = GenericTrainingSettings.model_fields
    assert all(f.description for f in fields.values())
    assert GenericTrainingSettings().simulation_shape_px == (512, 512)
