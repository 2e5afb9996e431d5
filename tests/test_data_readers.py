"""Data layer: FER-2013 CSV reader and cache, FER+ votes, image folders, label sets. Tiny generated data only."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import make_fer_rows
from emotionlab.data.errors import DataError
from emotionlab.data.fer2013 import load_fer2013, parse_fer_csv, write_fer_csv


def _px(n: int = 2304, value: int = 7) -> str:
    return " ".join([str(value)] * n)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- FER-2013 CSV


def test_fer_csv_reads_images_labels_usage(tiny_fer_csv):
    ds = load_fer2013(tiny_fer_csv)
    images, labels, usage = make_fer_rows(70)
    assert ds.images.dtype == np.uint8 and ds.images.shape == (70, 48, 48)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.usage.tolist() == usage.tolist()
    np.testing.assert_array_equal(ds.rows, np.arange(70))
    assert len(ds.split("PrivateTest")) == 23


def test_fer_csv_gz_equals_plain(tmp_path):
    images, labels, usage = make_fer_rows(14, seed=1)
    write_fer_csv(tmp_path / "a.csv", images, labels, usage)
    write_fer_csv(tmp_path / "a.csv.gz", images, labels, usage)
    with open(tmp_path / "a.csv.gz", "rb") as f:
        assert f.read(2) == b"\x1f\x8b"  # really gzipped
    a, b = load_fer2013(tmp_path / "a.csv"), load_fer2013(tmp_path / "a.csv.gz")
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.usage.tolist() == b.usage.tolist()


def test_fer_csv_without_usage(tmp_path):
    images, labels, _ = make_fer_rows(7)
    write_fer_csv(tmp_path / "n.csv", images, labels)
    ds = load_fer2013(tmp_path / "n.csv")
    assert set(ds.usage.tolist()) == {"Unspecified"} and len(ds) == 7
    np.testing.assert_array_equal(ds.labels, labels)


def test_fer_missing_and_empty_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_fer2013(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty file"):
        parse_fer_csv(tmp_path / "empty.csv")


def test_fer_csv_with_a_byte_order_mark_reads_and_bad_bytes_name_their_line(tmp_path):
    import gzip

    plain = _write(tmp_path / "p.csv", ["emotion,pixels,Usage", f"3,{_px()},Training", f"5,{_px(value=9)},PublicTest"])
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())  # as spreadsheets save "CSV UTF-8"
    a, b = parse_fer_csv(plain), parse_fer_csv(bom)
    assert np.array_equal(a.images, b.images) and list(b.labels) == [3, 5]
    lines = plain.read_bytes().splitlines(keepends=True)
    bad = lines[0] + lines[1] + b"5,\xff" + lines[2][2:]
    for path, data in ((tmp_path / "bad.csv", bad), (tmp_path / "bad.csv.gz", gzip.compress(bad))):
        path.write_bytes(data)
        with pytest.raises(DataError, match=r"bad\.csv(\.gz)?:3: not valid UTF-8 \(byte 0xff at column 3\)"):
            parse_fer_csv(path)


def test_fer_wrong_header_names_line_1(tmp_path):
    p = _write(tmp_path / "h.csv", ["label,pix,Usage", f"0,{_px()},Training"])
    with pytest.raises(DataError, match=r"h\.csv:1: header is \['label', 'pix', 'Usage'\]"):
        load_fer2013(p)


@pytest.mark.parametrize("bad, expect", [
    (f"3,{_px(2303)},Training", "has 2303 pixel values, expected 2304"),
    (f"3,{_px(2300)} 1 2 x 4,Training", "pixel 2302 is 'x', expected an integer 0..255"),
    (f"3,{_px(2303)} 256,Training", "pixel 2303 is 256, expected 0..255"),
    (f"7,{_px()},Training", "emotion is 7, expected 0..6"),
    (f"-1,{_px()},Training", "emotion is -1, expected 0..6"),
    (f"happy,{_px()},Training", "emotion is 'happy', expected an integer 0..6"),
    (f"3,{_px()}", "has 2 fields, expected 3"),
])
def test_fer_bad_row_names_line_and_problem(tmp_path, bad, expect):
    p = _write(tmp_path / "bad.csv", ["emotion,pixels,Usage", f"0,{_px()},Training", f"1,{_px()},Training", bad,
                                      f"2,{_px()},PublicTest"])
    with pytest.raises(DataError) as ei:
        load_fer2013(p)
    msg = str(ei.value)
    assert "bad.csv:4: row 2:" in msg and expect in msg and "--skip-bad" in msg
    assert ei.value.line == 4


def test_fer_skip_bad_counts_and_keeps_row_numbers(tmp_path):
    lines = ["emotion,pixels,Usage"]
    for i in range(8):
        if i in (1, 5):
            lines.append(f"{i % 7},{_px(100)},Training")
        elif i == 6:
            lines.append(f"9,{_px()},Training")
        else:
            lines.append(f"{i % 7},{_px(value=i)},Training")
    p = _write(tmp_path / "s.csv", lines)
    ds = load_fer2013(p, skip_bad=True)
    assert ds.skipped == 3 and len(ds) == 5
    assert ds.rows.tolist() == [0, 2, 3, 4, 7]
    assert ds.images[:, 0, 0].tolist() == [0, 2, 3, 4, 7]
    assert len(ds.extra["bad_examples"]) == 3 and "line 3" in ds.extra["bad_examples"][0]
    again = load_fer2013(p, skip_bad=True)  # from the cache: same count and examples
    assert again.skipped == 3 and again.extra["bad_examples"] == ds.extra["bad_examples"]
    with pytest.raises(DataError, match="s.csv:3"):
        load_fer2013(p)  # strict mode has its own cache key


def test_fer_cache_hit_identical_and_invalidated_by_change(tmp_path):
    from emotionlab.data.cache import cache_dir

    images, labels, usage = make_fer_rows(14, seed=2)
    p = tmp_path / "c.csv"
    write_fer_csv(p, images, labels, usage)
    first = load_fer2013(p)
    caches = [c for c in os.listdir(cache_dir()) if c.startswith("fer2013-")]
    assert caches, "the parse should have written an .npz cache"
    second = load_fer2013(p)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.rows, second.rows)
    assert first.usage.tolist() == second.usage.tolist()
    labels2 = labels.copy()
    labels2[0] = (labels2[0] + 1) % 7
    write_fer_csv(p, images, labels2, usage)
    third = load_fer2013(p)
    assert third.labels[0] == labels2[0] != first.labels[0]


def test_fer_corrupt_cache_is_rebuilt(tmp_path):
    from emotionlab.data.cache import cache_dir, file_hash

    images, labels, usage = make_fer_rows(7, seed=4)
    p = tmp_path / "k.csv"
    write_fer_csv(p, images, labels, usage)
    load_fer2013(p)
    cpath = next(c for c in cache_dir().iterdir() if file_hash(p) in c.name)
    cpath.write_bytes(b"truncated")
    ds = load_fer2013(p)
    np.testing.assert_array_equal(ds.images, images)


# ---------------------------------------------------------------- FER+ votes


def test_ferplus_vote_processing_by_hand():
    from emotionlab.data.ferplus import votes_to_targets
    from emotionlab.data.labels import FERPLUS8

    idx = FERPLUS8.index
    votes = np.array([
        # neutral happy surprise sad anger disgust fear contempt unknown NF
        [4, 0, 0, 1, 3, 2, 0, 0, 0, 0],  # sad's single vote is an outlier; 4/9 is no majority
        [0, 8, 1, 0, 0, 0, 0, 0, 1, 0],  # outliers removed -> happy 8/8
        [0, 0, 0, 0, 0, 0, 0, 0, 7, 3],  # unknown wins -> invalid
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # not a face -> invalid
        [2, 0, 0, 0, 0, 0, 0, 6, 2, 0],  # contempt 6/10
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # every vote an outlier -> invalid
        [0, 0, 5, 0, 0, 0, 0, 0, 0, 5],  # surprise ties with NF: valid, but 5/10 is no majority
    ])
    soft, major, valid = votes_to_targets(votes)
    assert valid.tolist() == [True, True, False, False, True, False, True]
    assert major.tolist() == [-1, idx("happy"), -1, -1, idx("contempt"), -1, -1]
    expect0 = np.zeros(8)
    expect0[[idx("neutral"), idx("angry"), idx("disgust")]] = [4 / 9, 3 / 9, 2 / 9]
    np.testing.assert_allclose(soft[0], expect0)
    assert soft[0, idx("sad")] == 0.0
    np.testing.assert_allclose(soft[1], np.eye(8)[idx("happy")])
    assert soft[2].sum() == 0 and soft[3].sum() == 0 and soft[5].sum() == 0
    np.testing.assert_allclose(soft[4][[idx("neutral"), idx("contempt")]], [0.25, 0.75])
    np.testing.assert_allclose(soft[6], np.eye(8)[idx("surprise")])


def _ferplus_file(path: Path, votes: np.ndarray, usage: list[str]) -> Path:
    lines = ["Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"]
    for i, (v, u) in enumerate(zip(votes, usage)):
        lines.append(f"{u},fer{i:07d}.png," + ",".join(map(str, v)))
    return _write(path, lines)


def test_ferplus_row_alignment_after_skipped_rows(tmp_path):
    from emotionlab.data.ferplus import attach_ferplus, load_ferplus

    images, labels, usage = make_fer_rows(6, seed=5)
    p = tmp_path / "f.csv"
    write_fer_csv(p, images, labels, usage)
    text = p.read_text().splitlines()
    text[2] = f"{labels[1]},1 2 3,{usage[1]}"  # data row 1 is malformed
    p.write_text("\n".join(text) + "\n")
    ds = load_fer2013(p, skip_bad=True)
    assert ds.rows.tolist() == [0, 2, 3, 4, 5]
    votes = np.zeros((6, 10), int)
    votes[np.arange(6), [1, 2, 4, 0, 3, 5]] = 10  # row r: one clear FER+ class
    fp = load_ferplus(_ferplus_file(tmp_path / "new.csv", votes, usage.tolist()))
    assert len(fp) == 6
    attach_ferplus(ds, fp)
    from emotionlab.data.labels import FER7

    expect = [FER7.index(n) for n in ("happy", "surprise", "angry", "neutral", "sad", "disgust")]
    assert ds.soft.argmax(1).tolist() == [expect[r] for r in ds.rows]
    bad_usage = usage.copy()
    bad_usage[3] = "Training" if usage[3] != "Training" else "PublicTest"
    fp2 = load_ferplus(_ferplus_file(tmp_path / "new2.csv", votes, bad_usage.tolist()))
    with pytest.raises(DataError, match="Usage disagrees"):
        attach_ferplus(load_fer2013(p, skip_bad=True), fp2)


def test_ferplus_reader_errors(tmp_path):
    from emotionlab.data.ferplus import load_ferplus

    with pytest.raises(DataError, match="file not found"):
        load_ferplus(tmp_path / "none.csv")
    p = _write(tmp_path / "h.csv", ["Usage,Image name,neutral,happiness", "Training,a.png,1,2"])
    with pytest.raises(DataError, match=r"h\.csv:1: missing vote columns"):
        load_ferplus(p)
    p = _ferplus_file(tmp_path / "v.csv", np.ones((2, 10), int), ["Training"] * 2)
    lines = p.read_text().splitlines()
    lines[2] = lines[2].replace(",1,1,1", ",1,x,1", 1)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"v\.csv:3: expected 10 integer vote counts"):
        load_ferplus(p)
    p.write_bytes(p.read_bytes().replace(b",1,x,1", b",1,\xe9,1", 1))  # Latin-1, not UTF-8
    with pytest.raises(DataError, match=r"v\.csv:3: not valid UTF-8"):
        load_ferplus(p)


# ---------------------------------------------------------------- image folders


def _png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def test_folder_aliases_split_level_and_formats(tmp_path):
    from emotionlab.data.folders import load_folder
    from emotionlab.data.labels import FER7

    root = tmp_path / "faces"
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 100, 255
    _png(root / "train" / "Happiness" / "rgba.png", rgba)
    _png(root / "train" / "anger" / "deep16.png", np.full((30, 30), 0x8000, np.uint16))
    _png(root / "train" / "sadness" / "odd.jpg", np.full((60, 40, 3), 200, np.uint8))
    _png(root / "test" / "surprised" / "big.bmp", np.full((96, 96), 50, np.uint8))
    _png(root / "validation" / "neutral" / "a.tiff", np.full((48, 48), 9, np.uint8))
    ds = load_folder(root, FER7, size=48)
    assert ds.images.shape == (5, 48, 48) and ds.images.dtype == np.uint8
    by_name = {Path(p).name: i for i, p in enumerate(ds.paths)}
    expect = {"rgba.png": ("happy", "train", 100), "deep16.png": ("angry", "train", 128),
              "odd.jpg": ("sad", "train", 200), "big.bmp": ("surprise", "test", 50), "a.tiff": ("neutral", "val", 9)}
    for name, (label, split, value) in expect.items():
        i = by_name[name]
        assert FER7.labels[ds.labels[i]] == label and ds.usage[i] == split
        assert abs(int(ds.images[i].mean()) - value) <= 1, name
    small = load_folder(root, FER7, size=20)
    assert small.images.shape == (5, 20, 20)


def test_folder_unknown_classes_error_or_ignore(tmp_path):
    from emotionlab.data.folders import load_folder

    root = tmp_path / "f"
    _png(root / "happy" / "a.png", np.zeros((48, 48), np.uint8))
    _png(root / "contempt" / "b.png", np.zeros((48, 48), np.uint8))
    _png(root / "bored" / "c.png", np.zeros((48, 48), np.uint8))
    with pytest.raises(DataError, match=r"\['bored', 'contempt'\].*--ignore-unknown"):
        load_folder(root, "fer7")
    ds = load_folder(root, "fer7", ignore_unknown=True)
    assert len(ds) == 1
    assert len(load_folder(root, "ferplus8", ignore_unknown=True)) == 2  # contempt is a FER+ class


def test_folder_stray_folder_next_to_split_level_is_not_silently_lost(tmp_path):
    from emotionlab.data.folders import load_folder

    root = tmp_path / "f"
    _png(root / "train" / "happy" / "a.png", np.zeros((48, 48), np.uint8))
    _png(root / "sad" / "b.png", np.zeros((48, 48), np.uint8))
    _png(root / "train" / "loose.png", np.zeros((48, 48), np.uint8))
    with pytest.raises(DataError, match=r"'sad'.*'train/loose.png'"):
        load_folder(root)
    assert len(load_folder(root, ignore_unknown=True)) == 1


def test_folder_reader_errors(tmp_path):
    from emotionlab.data.folders import load_folder, read_image

    with pytest.raises(DataError, match="not a directory"):
        load_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no class folders"):
        load_folder(tmp_path / "empty")
    root = tmp_path / "r"
    _png(root / "happy" / "ok.png", np.zeros((48, 48), np.uint8))
    (root / "happy" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "happy" / "zero.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="broken.png: not a readable image"):
        read_image(root / "happy" / "broken.png")
    with pytest.raises(DataError, match="zero.jpg: file is empty"):
        read_image(root / "happy" / "zero.jpg")
    with pytest.raises(DataError, match="broken.png"):
        load_folder(root)
    ds = load_folder(root, skip_bad=True)
    assert len(ds) == 1 and ds.skipped == 2


def test_load_dataset_dispatch(tmp_path, tiny_fer_csv):
    from emotionlab.data.loader import load_dataset

    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nothing")
    d = tmp_path / "withcsv"
    d.mkdir()
    (d / "fer2013.csv").write_bytes(tiny_fer_csv.read_bytes())
    assert len(load_dataset(d)) == 70
    assert load_dataset(tiny_fer_csv, size=24).images.shape == (70, 24, 24)


# ---------------------------------------------------------------- label sets


def test_label_sets_and_mapping_tables():
    from emotionlab.data.labels import (AFFECTNET8, CKPLUS7, FER7, FERPLUS8, canonical_name, get_label_set,
                                        index_map, mapping_table)

    assert FER7.labels == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert FERPLUS8.labels[:7] == FER7.labels and FERPLUS8.labels[7] == "contempt"
    assert len(CKPLUS7) == 7 and len(AFFECTNET8) == 8
    assert canonical_name(" Happiness ") == "happy" and canonical_name("surprised") == "surprise"
    assert get_label_set("FER+8") is FERPLUS8 and get_label_set("ck+7") is CKPLUS7
    with pytest.raises(KeyError, match="unknown label set"):
        get_label_set("imagenet")
    assert mapping_table("ckplus7", "fer7")["contempt"] is None
    assert mapping_table("fer7", "affectnet8")["neutral"] == "neutral"
    m = index_map(AFFECTNET8, FER7)
    assert [FER7.labels[i] if i >= 0 else None for i in m] == [
        "neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", None]
    assert index_map(FER7, FERPLUS8) == list(range(7))
    with pytest.raises(KeyError, match="not in label set"):
        FER7.index("contempt")


# ---------------------------------------------------------------- the real file


@pytest.mark.slow
def test_real_fer2013_split_counts(shared_data):
    """Parses the real CSV once (~30 s, the cache is a temp dir in tests) via the `data stats` command."""
    import json

    from typer.testing import CliRunner

    from emotionlab.cli import app

    res = CliRunner().invoke(app, ["data", "stats", str(shared_data / "fer2013" / "fer2013.csv.gz"), "--json",
                                   "--no-plot"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.stdout)
    assert {k: v["n"] for k, v in st["splits"].items()} == {"Training": 28709, "PublicTest": 3589,
                                                            "PrivateTest": 3589}
    assert st["splits"]["Training"]["per_class"]["disgust"] == 436
    assert abs(st["mean"] - 0.5077) < 5e-4 and abs(st["std"] - 0.2550) < 5e-4


def test_default_data_root_follows_env_then_checkout(monkeypatch, tmp_path):
    """The one rule every benchmark uses: $EMOTIONLAB_DATA first, else shared/data beside the checkout."""
    from pathlib import Path

    from emotionlab.data.paths import default_data_root, default_fer2013_csv

    monkeypatch.setenv("EMOTIONLAB_DATA", str(tmp_path))
    assert default_data_root() == tmp_path
    assert default_fer2013_csv() == tmp_path / "fer2013" / "fer2013.csv.gz"
    monkeypatch.delenv("EMOTIONLAB_DATA")
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)  # the checkout is found from the current directory
    assert default_data_root() == repo.parent / "shared" / "data"
