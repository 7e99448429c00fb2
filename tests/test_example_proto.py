"""The upb tf.train.Example parsers give the same records as TFDS's own deserializer."""

import pytest
import tensorflow_datasets as tfds

from agr_jax.data import tfds_builders
from agr_jax.data.example_proto import columns, first_values, parse_example


def test_parse_example_matches_tfds_decoding(synthetic_tfds):
    builder = tfds.builder_from_directory(str(tfds_builders.resolve_dir(synthetic_tfds)))
    raw = builder.as_data_source(
        split="train", deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES
    )
    decoded = builder.as_data_source(split="train")
    fast = tfds_builders.load_split(synthetic_tfds, "train")
    assert len(raw) == len(decoded) == len(fast) > 0
    for i in range(len(raw)):
        expected = tfds_builders.normalize_record(decoded[i])
        assert tfds_builders.normalize_record(parse_example(raw[i])) == expected
        keyed = first_values(raw[i], tfds_builders.FEATURE_KEYS)
        assert tfds_builders.normalize_record(keyed) == expected
        assert fast[i] == expected


def test_parse_example_lists_and_negative_ints():
    # Hand-built Example: {"xs": int64_list [-1, 300] packed, "b": bytes_list [b"a", b""]}.
    def ld(field, payload):  # length-delimited field
        return bytes([field << 3 | 2, len(payload)]) + payload

    neg1 = b"\xff" * 9 + b"\x01"
    ints = ld(3, ld(1, neg1 + b"\xac\x02"))
    byts = ld(1, ld(1, b"a") + ld(1, b""))
    features = ld(1, ld(1, b"xs") + ld(2, ints)) + ld(1, ld(1, b"b") + ld(2, byts))
    assert parse_example(ld(1, features)) == {"xs": [-1, 300], "b": [b"a", b""]}


def test_first_values_names_a_missing_feature(synthetic_tfds):
    builder = tfds.builder_from_directory(str(tfds_builders.resolve_dir(synthetic_tfds)))
    raw = builder.as_data_source(
        split="train", deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES
    )[0]
    with pytest.raises(KeyError, match="no feature 'landmarks'"):
        first_values(raw, ("image", "landmarks"))


def test_columns_gather_first_values_per_key(synthetic_tfds):
    builder = tfds.builder_from_directory(str(tfds_builders.resolve_dir(synthetic_tfds)))
    raw = builder.as_data_source(
        split="train", deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES
    )
    records = [raw[i] for i in (3, 1, 3)]
    keys = ("image", "race", "file_name")
    got = columns(records, keys)
    assert got == {k: [first_values(r, keys)[k] for r in records] for k in keys}
    with pytest.raises(KeyError, match="no feature 'missing'"):
        columns(records, ("image", "missing"))
