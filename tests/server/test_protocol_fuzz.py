"""Property-based tests of the message parser: any input is a Message or a ProtocolError, nothing else."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from instructavatar.server.protocol import (
    AUDIO_HEADER,
    AUDIO_MAGIC,
    ERROR_CODES,
    FIELDS,
    AudioFormat,
    Message,
    ProtocolError,
    pack_audio,
    parse_audio,
    parse_text,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
field_names = st.sampled_from(sorted({f for spec in FIELDS.values() for f in spec} | {"request_id", "x"}))
messages = st.fixed_dictionaries({"type": st.sampled_from([*FIELDS, "nope", 3])},
                                 optional={"version": st.sampled_from([1, 2, "1", None]),
                                           "request_id": json_values}).flatmap(
    lambda base: st.dictionaries(field_names, json_values, max_size=6).map(lambda extra: {**extra, **base}))


def check(text):
    try:
        msg = parse_text(text)
    except ProtocolError as e:
        assert e.code in ERROR_CODES and e.message and "\n" not in e.message
        json.dumps(e.to_json())
        return None
    assert isinstance(msg, Message) and msg.type in FIELDS
    return msg


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_message_or_a_protocol_error(text):
    check(text)


@settings(max_examples=80, deadline=None)
@given(messages)
def test_any_json_object_is_a_message_or_a_protocol_error(obj):
    msg = check(json.dumps(obj))
    if msg is not None and msg.type == "session.start":
        assert msg.body.version == 1 and (msg.body.portrait is None) != (msg.body.portrait_id is None)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(["pcm16", "float32"]), st.integers(1, 3))
def test_any_binary_is_audio_or_a_protocol_error(data, fmt, channels):
    af = AudioFormat(fmt, 16000, channels)
    for blob in (data, AUDIO_HEADER.pack(AUDIO_MAGIC, 5) + data):
        try:
            seq, x = parse_audio(blob, af)
        except ProtocolError as e:
            assert e.code == "bad_audio"
            continue
        assert seq == 5 and x.shape[1] == channels and np.isfinite(x).all()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1, 1, width=32), max_size=50), st.integers(0, 2**32 - 1))
def test_audio_round_trips(samples, seq):
    x = np.array(samples, np.float32)
    got_seq, got = parse_audio(pack_audio(seq, x, AudioFormat("float32")), AudioFormat("float32"))
    assert got_seq == seq
    np.testing.assert_array_equal(got[:, 0], x)
