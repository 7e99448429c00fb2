"""A minimal `tf.train.Example` parser for flat records (bytes and int64/float lists).

TFDS's numpy deserializer costs several times a 64px JPEG decode per record (it walks the
feature spec in Python); our records are flat, so reading the protobuf wire format directly
takes the read step of the input pipeline off the critical path. Reference for the format:
tensorflow/core/example/{example,feature}.proto.
"""

from __future__ import annotations

import struct

Value = bytes | int | float | list


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int):
    """Yields (field number, wire type, value or (start, end) for length-delimited)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 2:
            n, pos = _varint(buf, pos)
            yield field, wire, (pos, pos + n)
            pos += n
        elif wire == 0:
            v, pos = _varint(buf, pos)
            yield field, wire, v
        elif wire == 5:
            yield field, wire, (pos, pos + 4)
            pos += 4
        elif wire == 1:
            yield field, wire, (pos, pos + 8)
            pos += 8
        else:
            raise ValueError(f"tf.train.Example: unsupported wire type {wire} at byte {pos}")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _feature(buf: memoryview, start: int, end: int) -> list:
    out: list = []
    for kind, _, span in _fields(buf, start, end):  # the oneof: 1 bytes, 2 float, 3 int64
        for _, wire, v in _fields(buf, *span):
            if kind == 1:
                out.append(bytes(buf[v[0] : v[1]]))
            elif kind == 3 and wire == 2:  # packed varints
                pos, stop = v
                while pos < stop:
                    x, pos = _varint(buf, pos)
                    out.append(_signed(x))
            elif kind == 3:
                out.append(_signed(v))
            elif kind == 2 and wire == 2:  # packed floats
                out.extend(struct.unpack(f"<{(v[1] - v[0]) // 4}f", buf[v[0] : v[1]]))
            elif kind == 2:
                out.append(struct.unpack("<f", buf[v[0] : v[1]])[0])
    return out


def parse_example(raw: bytes) -> dict[str, Value]:
    """Serialized `tf.train.Example` -> {name: value}; one-element lists become scalars."""
    buf = memoryview(raw)
    out: dict[str, Value] = {}
    for field, _, features in _fields(buf, 0, len(buf)):
        if field != 1:
            continue
        for _, _, entry in _fields(buf, *features):
            key, values = None, []
            for efield, _, span in _fields(buf, *entry):
                if efield == 1:
                    key = bytes(buf[span[0] : span[1]]).decode("utf-8")
                elif efield == 2:
                    values = _feature(buf, *span)
            if key is None:
                raise ValueError("tf.train.Example: feature map entry without a key")
            out[key] = values[0] if len(values) == 1 else values
    return out
