"""Image folders, CSV + folder and unlabeled folders on generated PNG/JPEG files; decoding of every mode;
bad inputs and their messages; the decoded-table cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import engine.data.folders as folders
from engine.config import DataConfig
from engine.data import load_dataset, load_unlabeled
from engine.data.decode import decode_image
from engine.data.table import cache_path
from engine.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMGCLS_OFFLINE", "1")


def _rgb(value: int, size: int = 10) -> Image.Image:
    arr = np.full((size, size, 3), value, dtype=np.uint8)
    arr[: size // 2, :, 0] = 255 - value
    return Image.fromarray(arr, "RGB")


def _save_mode(img: Image.Image, path, mode: str) -> None:
    """Save `img` in one of the awkward modes a real image folder contains."""
    if mode == "RGBA":
        img.convert("RGBA").save(path)
    elif mode == "P":
        img.convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    elif mode == "LA":
        img.convert("LA").save(path)
    elif mode == "L":
        img.convert("L").save(path)
    elif mode == "CMYK":
        img.convert("CMYK").save(path.with_suffix(".jpg"))
    elif mode == "I;16":
        arr16 = np.asarray(img.convert("L"), dtype=np.uint16) * 257
        Image.fromarray(arr16).save(path)
    elif mode == "JPEG":
        img.save(path.with_suffix(".jpg"), quality=95)
    else:
        img.save(path)


MODES = ["RGB", "RGBA", "P", "LA", "L", "CMYK", "I;16", "JPEG"]


def make_folder(root, classes=("cat", "dog", "eel"), per_class=8, size=10):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            _save_mode(_rgb(40 * c + i, size), root / name / f"{name}_{i}.png", MODES[i % len(MODES)])
    return root


def test_every_mode_decodes_to_the_configured_channels(tmp_path):
    base = _rgb(100, 12)
    for mode in MODES:
        path = tmp_path / f"x_{mode.replace(';', '')}.png"
        _save_mode(base, path, mode)
        path = path if path.exists() else path.with_suffix(".jpg")
        rgb, gray = decode_image(path, 8, 3), decode_image(path, 8, 1)
        assert rgb.shape == (3, 8, 8) and gray.shape == (1, 8, 8) and rgb.dtype == np.uint8
        expected = np.asarray(base.convert("L").resize((8, 8)))
        assert np.abs(gray[0].astype(int) - expected).mean() < 12, mode


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((4, 4), 30000, dtype=np.uint16)).save(tmp_path / "wide.png")
    assert decode_image(tmp_path / "wide.png", None, 1).max() == round(30000 / 257)


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((8, 16, 3), dtype=np.uint8)
    arr[:, :8] = 255  # left half white in the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: the white half ends up on top
    Image.fromarray(arr).save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    out = decode_image(tmp_path / "rotated.jpg", None, 1)
    assert out.shape == (1, 16, 8)
    assert out[0, :8].mean() > 200 and out[0, 8:].mean() < 50


def test_image_folder_source(tmp_path):
    make_folder(tmp_path / "train")
    ds = load_dataset(DataConfig(source="folder", root=str(tmp_path / "train"), channels=3, image_size=8,
                                 val_fraction=0.25, test_fraction=0.25))
    assert ds.classes == ["cat", "dog", "eel"]
    assert ds.images.shape == (24, 3, 8, 8) and ds.images.dtype == torch.uint8
    assert torch.bincount(ds.labels).tolist() == [8, 8, 8]
    assert ds.info["counts"] == {"train": 13, "val": 5, "test": 6}  # 25% of the 18 left, rounded up
    assert torch.bincount(ds.labels[ds.test_idx]).tolist() == [2, 2, 2]


def test_folder_native_size_and_channels_from_first_image(tmp_path):
    make_folder(tmp_path / "train", per_class=2)
    ds = load_dataset(DataConfig(source="folder", root=str(tmp_path / "train")))
    assert ds.images.shape == (6, 3, 10, 10)


def test_explicit_test_folder_and_unknown_test_class(tmp_path):
    make_folder(tmp_path / "train", per_class=4)
    make_folder(tmp_path / "test", classes=("cat", "eel"), per_class=2)
    ds = load_dataset(DataConfig(source="folder", root=str(tmp_path / "train"), test_root=str(tmp_path / "test"),
                                 image_size=8))
    assert len(ds.test_idx) == 4 and ds.labels[ds.test_idx].tolist() == [0, 0, 2, 2]
    assert len(ds.train_idx) + len(ds.val_idx) == 12
    make_folder(tmp_path / "test2", classes=("cow",), per_class=1)
    with pytest.raises(DataError, match="cow"):
        load_dataset(DataConfig(source="folder", root=str(tmp_path / "train"), test_root=str(tmp_path / "test2")))


def test_mixed_sizes_without_image_size_is_an_error(tmp_path):
    make_folder(tmp_path / "train", per_class=2)
    _rgb(0, 14).save(tmp_path / "train" / "dog" / "big.png")
    with pytest.raises(DataError, match=r"big\.png.*data\.image_size"):
        load_dataset(DataConfig(source="folder", root=str(tmp_path / "train")))


def test_empty_class_folder_and_missing_root(tmp_path):
    make_folder(tmp_path / "train", per_class=2)
    (tmp_path / "train" / "zebra").mkdir()
    with pytest.raises(DataError, match="zebra"):
        load_dataset(DataConfig(source="folder", root=str(tmp_path / "train")))
    with pytest.raises(DataError, match="nowhere"):
        load_dataset(DataConfig(source="folder", root=str(tmp_path / "nowhere")))


@pytest.mark.parametrize("kind", ["garbage", "truncated", "text"])
def test_bad_image_is_named_or_skipped(tmp_path, kind):
    root = make_folder(tmp_path / "train", per_class=3)
    bad = root / "dog" / ("bad.png" if kind != "truncated" else "bad.jpg")
    if kind == "garbage":
        bad.write_bytes(bytes(range(256)) * 4)
    elif kind == "text":
        bad.write_text("not an image at all")
    else:
        _rgb(0, 64).save(tmp_path / "full.jpg", quality=95)
        bad.write_bytes((tmp_path / "full.jpg").read_bytes()[:400])
    cfg = DataConfig(source="folder", root=str(root), image_size=8)
    with pytest.raises(DataError, match=r"bad\.(png|jpg).*on_bad_image"):
        load_dataset(cfg)
    ds = load_dataset(DataConfig(source="folder", root=str(root), image_size=8, on_bad_image="skip"))
    assert len(ds.labels) == 9 and ds.info["skipped"] == 1 and ds.info["skipped_files"] == [str(bad)]


def make_csv_dataset(tmp_path, labels, name="labels.csv", header="Id,Category", suffix=".png"):
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    lines = [header]
    for i, label in enumerate(labels):
        _rgb(10 * i % 256).save(images / f"img_{name[0]}{i}{suffix}")
        lines.append(f"img_{name[0]}{i},{label}")
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    return images


def test_csv_source_with_names_and_integers(tmp_path):
    images = make_csv_dataset(tmp_path, ["b", "a", "b", "c"] * 3)
    ds = load_dataset(DataConfig(source="csv", root=str(images), csv_file="../labels.csv", image_size=6,
                                 channels=1, val_fraction=0.0, test_fraction=0.0))
    assert ds.classes == ["a", "b", "c"] and ds.labels[:4].tolist() == [1, 0, 1, 2]
    assert ds.images.shape == (12, 1, 6, 6)
    (tmp_path / "ints.csv").write_text("file,y\n" + "".join(f"img_l{i}.png,{i % 3 * 5}\n" for i in range(12)))
    ds = load_dataset(DataConfig(source="csv", root=str(images), csv_file=str(tmp_path / "ints.csv"),
                                 file_column="file", label_column="y"))
    assert ds.classes == ["0", "5", "10"] and ds.labels[:4].tolist() == [0, 1, 2, 0]


def test_csv_with_explicit_test_csv_and_its_errors(tmp_path):
    images = make_csv_dataset(tmp_path, [0, 1] * 5)
    make_csv_dataset(tmp_path, [1, 0, 1], name="test.csv")
    cfg = dict(source="csv", root=str(images), csv_file="../labels.csv", test_csv_file="../test.csv")
    ds = load_dataset(DataConfig(**cfg))
    assert ds.labels[ds.test_idx].tolist() == [1, 0, 1]
    make_csv_dataset(tmp_path, [1, 7], name="test.csv")
    with pytest.raises(DataError, match=r"test\.csv: line 3: unknown label `7`"):
        load_dataset(DataConfig(**cfg))


def test_csv_bad_inputs_name_the_row_or_column(tmp_path):
    images = make_csv_dataset(tmp_path, ["a", "b", "a"])
    cfg = dict(source="csv", root=str(images), csv_file="../labels.csv")
    with pytest.raises(DataError, match=r"no column `Label`.*Id, Category"):
        load_dataset(DataConfig(**cfg, label_column="Label"))
    (images / "img_l1.png").unlink()
    with pytest.raises(DataError, match=r"labels\.csv: line 3: image file .*img_l1 does not exist"):
        load_dataset(DataConfig(**cfg))
    (tmp_path / "labels.csv").write_text("Id,Category\nimg_l0,a\nimg_l2,\n")
    with pytest.raises(DataError, match=r"line 3: empty `Category`"):
        load_dataset(DataConfig(**cfg))
    with pytest.raises(DataError, match="data.csv_file"):
        load_dataset(DataConfig(source="csv", root=str(images)))


def test_csv_file_suffix(tmp_path):
    images = make_csv_dataset(tmp_path, ["a", "b"] * 2, suffix=".jpg")
    (images / "img_l0.png").write_bytes(b"")  # a same-stem decoy: the suffix decides
    ds = load_dataset(DataConfig(source="csv", root=str(images), csv_file="../labels.csv", file_suffix=".jpg",
                                 val_fraction=0.0, test_fraction=0.0))
    assert len(ds.labels) == 4


def test_unlabeled_folder_sorted_by_id(tmp_path):
    folder = tmp_path / "test"
    folder.mkdir()
    for name in ["b", "a", "c10", "c2"]:
        _rgb(5).save(folder / f"{name}.png")
    (folder / "notes.txt").write_text("ignored")
    images, ids = load_unlabeled(folder, image_size=4, channels=3)
    assert ids == ["a", "b", "c10", "c2"] and images.shape == (4, 3, 4, 4) and images.dtype == torch.uint8
    again, ids_again = load_unlabeled(folder, image_size=4, channels=3)
    assert ids_again == ids and torch.equal(again, images)
    (folder / "bad.png").write_text("junk")
    with pytest.raises(DataError, match=r"bad\.png"):
        load_unlabeled(folder, image_size=4, channels=3)
    _, ids = load_unlabeled(folder, image_size=4, channels=3, on_bad_image="skip")
    assert "bad" not in ids and len(ids) == 4
    _rgb(6).save(folder / "a.jpg")
    with pytest.raises(DataError, match=r"share the id `a` \(a\.jpg, a\.png\)"):
        load_unlabeled(folder, image_size=4, channels=3, on_bad_image="skip")
    with pytest.raises(DataError, match=r"images to predict \(--images\): folder .*nowhere does not exist"):
        load_unlabeled(tmp_path / "nowhere", image_size=4, channels=3)


def test_cache_is_used_on_second_load_and_keyed_by_files_and_resolution(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "train", per_class=3)
    cfg = DataConfig(source="folder", root=str(root), image_size=8)
    first = load_dataset(cfg)
    assert not first.info["cache_hit"] and cache_path(first.info["cache_key"]).is_file()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decode called although the table is cached")

    with monkeypatch.context() as patch:
        patch.setattr(folders, "decode_files", no_decoding)
        second = load_dataset(cfg)
    assert second.info["cache_hit"] and second.info["cache_key"] == first.info["cache_key"]
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    resized = load_dataset(DataConfig(source="folder", root=str(root), image_size=6))
    assert resized.info["cache_key"] != first.info["cache_key"] and not resized.info["cache_hit"]
    _rgb(3).save(root / "cat" / "extra.png")
    more = load_dataset(cfg)
    assert more.info["cache_key"] != first.info["cache_key"] and len(more.labels) == 10


def test_channels_come_from_a_sample_not_the_first_file(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=4)
    Image.new("L", (10, 10), 7).save(root / "cat" / "0000-gray-first.png")
    assert load_dataset(DataConfig(source="folder", root=str(root), image_size=10)).channels == 3


def test_skip_works_when_the_first_file_is_corrupt(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=4)
    (root / "cat" / "0000-broken.png").write_bytes(b"not an image")
    dataset = load_dataset(DataConfig(source="folder", root=str(root), image_size=10, on_bad_image="skip"))
    assert dataset.info["skipped"] == 1 and len(dataset.labels) == 12


def test_non_square_images_need_an_image_size(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 8), (i, 0, 0)).save(tmp_path / "imgs" / name / f"{i}.png")
    with pytest.raises(DataError, match="16x8 px, not square; set data.image_size"):
        load_dataset(DataConfig(source="folder", root=str(tmp_path / "imgs")))


def test_test_folder_may_not_share_images_with_training(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=3)
    with pytest.raises(DataError, match="in the training set and in the test set"):
        load_dataset(DataConfig(source="folder", root=str(root), test_root=str(root), image_size=10))


def test_csv_row_listing_an_image_twice_is_an_error(tmp_path):
    (tmp_path / "imgs").mkdir()
    for i in range(4):
        _rgb(i * 30).save(tmp_path / "imgs" / f"im{i}.png")
    (tmp_path / "labels.csv").write_text("Id,Category\nim0,a\nim1,b\nim2,a\nim3,b\nim3.png,b\n")
    with pytest.raises(DataError, match=r"line 6: image im3.png is already listed on line 5"):
        load_dataset(DataConfig(source="csv", root=str(tmp_path / "imgs"), csv_file=str(tmp_path / "labels.csv"),
                                image_size=10))


def test_float_images_in_unit_range_are_scaled(tmp_path):
    path = tmp_path / "f.tif"
    Image.fromarray(np.full((4, 4), 0.8, dtype=np.float32), "F").save(path)
    assert int(decode_image(path, None, 1).max()) == 204


def test_a_word_among_integer_labels_is_a_typo_named_by_line(tmp_path):
    images = make_csv_dataset(tmp_path, [i % 3 for i in range(150)] + ["l"])
    with pytest.raises(DataError, match=r"labels\.csv: line 152: label `l` .* is not an integer, while 150 of the "
                                        r"151 labels are"):
        load_dataset(DataConfig(source="csv", root=str(images), csv_file="../labels.csv"))


def test_declared_classes_order_the_labels_and_refuse_unknown_ones(tmp_path):
    images = make_csv_dataset(tmp_path, ["tops", "shoes", "tops", "bags"] * 3)
    cfg = dict(source="csv", root=str(images), csv_file="../labels.csv", val_fraction=0.0, test_fraction=0.0)
    ds = load_dataset(DataConfig(**cfg, classes=["tops", "shoes", "bags"]))
    assert ds.classes == ["tops", "shoes", "bags"] and ds.labels[:4].tolist() == [0, 1, 0, 2]
    with pytest.raises(DataError, match=r"line 5: unknown label `bags` .*3 data\.classes \(did you mean `bag`"):
        load_dataset(DataConfig(**cfg, classes=["tops", "shoes", "bag"]))
    with pytest.raises(DataError, match=r"class `hats` has no images"):
        load_dataset(DataConfig(**cfg, classes=["tops", "shoes", "bags", "hats"]))


def test_declared_classes_for_a_folder(tmp_path):
    root = make_folder(tmp_path / "train", per_class=2)
    ds = load_dataset(DataConfig(source="folder", root=str(root), classes=["eel", "cat", "dog"]))
    assert ds.classes == ["eel", "cat", "dog"] and sorted(set(ds.labels.tolist())) == [0, 1, 2]
    with pytest.raises(DataError, match=r"class folder `eel` is not one of the 2 data\.classes"):
        load_dataset(DataConfig(source="folder", root=str(root), classes=["cat", "dog"]))
    with pytest.raises(DataError, match=r"no folder for class `emu`"):
        load_dataset(DataConfig(source="folder", root=str(root), classes=["cat", "dog", "eel", "emu"]))


def test_a_class_left_empty_by_skipping_is_an_error(tmp_path):
    root = make_folder(tmp_path / "train", per_class=2)
    for path in (root / "eel").iterdir():
        path.write_bytes(b"broken")
    with pytest.raises(DataError, match=r"class `eel` has no images: all its images were unreadable and skipped"):
        load_dataset(DataConfig(source="folder", root=str(root), image_size=8, on_bad_image="skip"))


def test_a_stem_matching_two_files_is_named_as_ambiguous(tmp_path):
    images = make_csv_dataset(tmp_path, ["a", "b"] * 2)
    _rgb(3).save(images / "img_l1.bmp")
    with pytest.raises(DataError, match=r"line 3: `img_l1` matches several files \(img_l1\.bmp, img_l1\.png\)"):
        load_dataset(DataConfig(source="csv", root=str(images), csv_file="../labels.csv"))


def test_declared_classes_match_names_exactly_and_are_checked(tmp_path):
    images = make_csv_dataset(tmp_path, ["01", "02", "01", "02"])
    cfg = dict(source="csv", root=str(images), csv_file="../labels.csv", val_fraction=0.0, test_fraction=0.0)
    assert load_dataset(DataConfig(**cfg, classes=["02", "01"])).labels.tolist() == [1, 0, 1, 0]
    from engine.config import ExperimentConfig, check_semantics

    for classes, source, message in ((["a", "a", "b"], "csv", r"names \['a'\] more than once"),
                                     (["a", "b"], "digits", "only folder and csv sources")):
        with pytest.raises(ConfigError, match=message):
            check_semantics(ExperimentConfig(data=DataConfig(source=source, classes=classes)))


def test_a_stem_is_looked_up_among_image_files_only(tmp_path):
    images = make_csv_dataset(tmp_path, ["a", "b"] * 2)
    (images / "img_l1.txt").write_text("notes about the image")
    ds = load_dataset(DataConfig(source="csv", root=str(images), csv_file="../labels.csv", val_fraction=0.0,
                                 test_fraction=0.0))
    assert len(ds.labels) == 4


def test_a_csv_path_given_from_the_working_directory_is_named(tmp_path, monkeypatch):
    images = make_csv_dataset(tmp_path, ["a", "b"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"relative to data\.root; labels\.csv exists from the working directory: "
                                        r"--set data\.csv_file=" + str(tmp_path / "labels.csv")):
        load_dataset(DataConfig(source="csv", root=str(images), csv_file="labels.csv"))


def test_integer_class_names_may_be_written_as_numbers():
    from engine.config import from_dict

    assert from_dict({"data": {"source": "csv", "classes": [0, 1, 10]}}).data.classes == ["0", "1", "10"]
