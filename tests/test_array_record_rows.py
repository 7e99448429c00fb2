"""ArrayRecordRows reads the records TFDS's data source reads, in the same order."""

import pickle

import numpy as np
import pytest
import tensorflow_datasets as tfds
from array_record.python.array_record_module import ArrayRecordWriter

from agr_jax.data import tfds_builders
from agr_jax.data.array_record_rows import ArrayRecordRows


@pytest.mark.parametrize("split", ["train", "train[3:9]", "validation[:2]+train[1:4]+test[2:]"])
def test_rows_match_tfds_data_source(synthetic_tfds, split):
    builder = tfds.builder_from_directory(str(tfds_builders.resolve_dir(synthetic_tfds)))
    reference = builder.as_data_source(
        split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    rows = ArrayRecordRows.from_file_instructions(builder.info.splits[split].file_instructions)
    assert len(rows) == len(reference) > 0
    order = np.random.default_rng(0).permutation(len(rows)).tolist()
    order += order[:3]  # repeats
    assert rows.__getitems__(order) == [reference[i] for i in order]
    assert rows[len(rows) - 1] == reference[len(rows) - 1]


def _write(path, records):
    writer = ArrayRecordWriter(str(path), "group_size:1")
    for r in records:
        writer.write(r)
    writer.close()


def test_skip_take_across_files_and_pickling(tmp_path):
    _write(tmp_path / "a", [b"a%d" % i for i in range(5)])
    _write(tmp_path / "b", [b"b%d" % i for i in range(4)])
    rows = ArrayRecordRows([(tmp_path / "a", 1, 3), (tmp_path / "b", 0, 4),
                            (tmp_path / "a", 4, 1)])
    expected = [b"a1", b"a2", b"a3", b"b0", b"b1", b"b2", b"b3", b"a4"]
    assert len(rows) == len(expected)
    assert rows.__getitems__(range(len(rows))) == expected
    assert rows.__getitems__([7, 0, 3, 3]) == [b"a4", b"a1", b"b0", b"b0"]
    copy = pickle.loads(pickle.dumps(rows))
    assert copy.__getitems__([6, 2]) == [b"b3", b"a3"]
    assert rows.__getitems__([]) == []


def test_out_of_range_names_index_and_files(tmp_path):
    _write(tmp_path / "a", [b"x", b"y"])
    rows = ArrayRecordRows([(tmp_path / "a", 0, 2)])
    with pytest.raises(IndexError, match=r"record 2 out of range for 2 records"):
        rows[2]
    with pytest.raises(IndexError, match="record -1"):
        rows.__getitems__([0, -1])
    with pytest.raises(ValueError, match="no ArrayRecord file instructions"):
        ArrayRecordRows([])
