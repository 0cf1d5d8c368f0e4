"""SSE encoding and incremental decoding."""

from __future__ import annotations

from apps.common.sse import SSEDecoder, encode_event, encode_json


def test_encode_splits_multiline_data() -> None:
    assert encode_event("a\nb", event="x") == b"event: x\ndata: a\ndata: b\n\n"
    assert encode_json({"k": 1}) == b'data: {"k":1}\n\n'


def test_decoder_handles_arbitrary_chunk_boundaries() -> None:
    stream = b'data: {"a":1}\n\n: keepalive\n\nevent: done\ndata: x\ndata: y\n\ndata: [DONE]\n\n'
    for size in (1, 2, 3, 7, len(stream)):
        decoder = SSEDecoder()
        events = []
        for start in range(0, len(stream), size):
            events.extend(decoder.feed(stream[start : start + size]))
        events.extend(decoder.flush())
        assert [(e.event, e.data) for e in events] == [
            ("message", '{"a":1}'),
            ("done", "x\ny"),
            ("message", "[DONE]"),
        ]


def test_decoder_accepts_crlf_and_cr() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"data: one\r\n\r\ndata: two\r\r")
    events += decoder.flush()
    assert [e.data for e in events] == ["one", "two"]


def test_decoder_flushes_an_unterminated_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: tail") == []
    assert [e.data for e in decoder.flush()] == ["tail"]


def test_roundtrip_of_utf8_split_inside_a_character() -> None:
    payload = encode_event("héllo wörld")
    decoder = SSEDecoder()
    events = []
    for byte in payload:
        events.extend(decoder.feed(bytes([byte])))
    assert [e.data for e in events] == ["héllo wörld"]
