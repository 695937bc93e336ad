from pathlib import Path

import numpy as np
import pytest

from facepaint.common.report import DatasetError
from facepaint.data import celebamask
from facepaint.data.celebamask import ATTRIBUTES, read_attributes, scan


def write_attr_file(path: Path, rows, count=None, names=ATTRIBUTES):
    lines = [str(len(rows) if count is None else count), " ".join(names)]
    lines += rows
    path.write_text("\n".join(lines) + "\n")
    return path


def row(image_id, values=None):
    values = values if values is not None else [(-1) ** (image_id + k) for k in range(40)]
    return f"{image_id}.jpg  " + " ".join(str(v) for v in values)


def test_reads_valid_file(tmp_path):
    path = write_attr_file(tmp_path / "a.txt", [row(5), row(2), row(10)])
    attrs = read_attributes(path)
    assert attrs.ids.tolist() == [2, 5, 10]
    assert list(attrs.table.columns) == list(ATTRIBUTES)
    assert attrs.table.loc[2].tolist() == [(-1) ** (2 + k) for k in range(40)]
    assert attrs.problems == [] and attrs.warnings == []


def test_zero_is_read_as_absent_and_columns_map_by_name(tmp_path):
    names = list(ATTRIBUTES)[::-1]  # a file with the columns in another order
    values = [0] * 40
    values[names.index("Smiling")] = 1
    attrs = read_attributes(write_attr_file(tmp_path / "a.txt", [row(1, values)], names=names))
    assert attrs.table.loc[1, "Smiling"] == 1
    assert (attrs.table.drop(columns="Smiling").loc[1] == -1).all()


@pytest.mark.parametrize(
    "content, where",
    [
        ("thirty\n" + " ".join(ATTRIBUTES) + "\n" + row(0), "line 1"),
        ("1\n" + " ".join(ATTRIBUTES[:-1]) + "\n" + row(0), "line 2"),
        ("1\n" + " ".join(ATTRIBUTES[:-1]) + " Glowing\n" + row(0), "line 2"),
        ("1\n", "found 1 line"),
    ],
)
def test_malformed_header_is_fatal_and_names_the_line(tmp_path, content, where):
    path = tmp_path / "attr.txt"
    path.write_text(content)
    with pytest.raises(DatasetError, match=where) as e:
        read_attributes(path)
    assert str(path) in str(e.value)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(DatasetError, match="attribute file not found.*nowhere.txt"):
        read_attributes(tmp_path / "nowhere.txt")


def test_malformed_rows_are_skipped_with_line_numbers(tmp_path):
    bad_value = [1] * 40
    bad_value[7] = 2
    rows = [
        row(0),
        row(1, [1] * 39),
        row(2, bad_value),
        "x.jpg " + " ".join(["1"] * 40),
        row(3).replace(" 1", " yes", 1),
        row(0),
        row(4),
    ]
    attrs = read_attributes(write_attr_file(tmp_path / "a.txt", rows))
    assert attrs.ids.tolist() == [0, 4]
    got = {(p.line, p.id): p.reason for p in attrs.problems}
    assert set(got) == {(4, 1), (5, 2), (6, None), (7, 3), (8, 0)}
    assert "39" in got[(4, 1)] and "2 is not" in got[(5, 2)] and "duplicate" in got[(8, 0)]


def test_count_mismatch_is_a_warning(tmp_path):
    attrs = read_attributes(write_attr_file(tmp_path / "a.txt", [row(0), row(1)], count=30000))
    assert len(attrs.ids) == 2 and "30000" in attrs.warnings[0]


def test_no_valid_rows_is_fatal(tmp_path):
    with pytest.raises(DatasetError, match="no valid attribute rows"):
        read_attributes(write_attr_file(tmp_path / "a.txt", [row(1, [1] * 3)]))


def test_paths_follow_the_official_layout(tmp_path):
    assert celebamask.image_path(tmp_path, 27) == tmp_path / "CelebA-HQ-img" / "27.jpg"
    assert (
        celebamask.part_mask_path(tmp_path, 4001, "l_eye")
        == tmp_path / "CelebAMask-HQ-mask-anno" / "2" / "04001_l_eye.png"
    )
    assert celebamask.part_mask_path(tmp_path, 1999, "skin").parent.name == "0"


def test_check_parts_rejects_unknown_names():
    assert celebamask.check_parts(["skin", "nose"]) == ("skin", "nose")
    with pytest.raises(ValueError, match="beard"):
        celebamask.check_parts(["skin", "beard"])


def test_scan_separates_present_missing_and_unlisted(tmp_path):
    write_attr_file(tmp_path / celebamask.ATTRIBUTE_FILE, [row(i) for i in range(5)])
    (tmp_path / celebamask.IMAGE_DIR).mkdir()
    for i in (1, 3, 9):
        (tmp_path / celebamask.IMAGE_DIR / f"{i}.jpg").write_bytes(b"")
    (tmp_path / celebamask.IMAGE_DIR / "notes.txt").write_text("ignored")
    sc = scan(tmp_path, read_attributes(tmp_path / celebamask.ATTRIBUTE_FILE))
    assert sc.present.tolist() == [1, 3]
    assert sc.missing.tolist() == [0, 2, 4]
    assert sc.unlisted.tolist() == [9]


def test_scan_without_image_folder_is_fatal(tmp_path):
    write_attr_file(tmp_path / celebamask.ATTRIBUTE_FILE, [row(0)])
    with pytest.raises(DatasetError, match="CelebA-HQ-img"):
        scan(tmp_path, read_attributes(tmp_path / celebamask.ATTRIBUTE_FILE))


def test_real_fixture_is_a_partial_download(fixture_root):
    attrs = read_attributes(fixture_root / celebamask.ATTRIBUTE_FILE)
    assert len(attrs.ids) == 30000 and not attrs.problems and not attrs.warnings
    sc = scan(fixture_root, attrs)
    expected = sorted(int(x) for x in (fixture_root / "ids.txt").read_text().split())
    assert sc.present.tolist() == expected and len(expected) == 200
    assert len(sc.missing) == 29800
    assert not np.intersect1d(sc.present, sc.missing).size
