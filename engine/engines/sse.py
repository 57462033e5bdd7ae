"""A server-sent-events parser on bytes, as the WHATWG HTML standard defines the stream
(https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream).

A line ends at CR LF, LF or CR — nothing else. Python's `str.splitlines()` (and so httpx's
`aiter_lines()`) also breaks at U+000B, U+000C, U+001C-U+001E, U+0085, U+2028 and U+2029, which may
appear raw inside the JSON text of an event; splitting there loses events. This parser works on the
raw bytes: UTF-8 encodes every character above U+007F with bytes >= 0x80, so no multi-byte
character can contain a CR (0x0D) or LF (0x0A) byte, and the others are plain data here.

It is on the token path, so it is kept small: `feed(chunk)` takes the bytes as they arrived and
returns the `data` of every event the chunk completed (bytes, the data lines joined with LF, as the
standard does), and the caller timestamps them all with the chunk's arrival time. A CR at the end of
one chunk followed by an LF at the start of the next is one line end. Field names other than `data`
(`event`, `id`, `retry`) and comments (`:` lines) are skipped. `close()` returns the data of an event
the stream left without its closing blank line (the standard drops it; `vllm bench serve` keeps a
final `data:` line, and so do we).

Two lines outside the standard are read as events of their own, since servers send their errors so:
an `error:` field (llama.cpp's server through 2025, before ggml-org/llama.cpp PR #16109: `error: {"code",
"message", "type"}`) becomes the data `{"error": <its value>}`, and a line that starts with `{` (a bare
JSON object: Ollama's OpenAI layer writes a mid-stream error that way, middleware/openai.go writeError)
is the data as it stands.
"""

from __future__ import annotations

import json

_BOM = b"\xef\xbb\xbf"


class SSEParser:
    """Incremental SSE parser: bytes in, each complete event's `data` (bytes) out."""

    __slots__ = ("_rest", "_data", "_after_cr", "_started")

    def __init__(self) -> None:
        self._rest = b""  # an incomplete line carried to the next chunk
        self._data: list[bytes] = []  # the data lines of the event being read
        self._after_cr = False  # the last chunk ended in CR: an LF starting the next belongs to it
        self._started = False  # the leading byte-order mark is checked once

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data of every event this chunk completed, in order (often one, sometimes none)."""
        if self._after_cr:
            self._after_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buf = self._rest + chunk if self._rest else chunk
        if not self._started:
            if len(buf) < 3 and _BOM.startswith(buf):
                self._rest = buf  # wait: these bytes may still become a byte-order mark
                return []
            self._started = True
            if buf.startswith(_BOM):
                buf = buf[3:]
        if buf[:6] == b"data: " and not self._data and b"\r" not in buf:
            # The usual bytes: whole one-line events ("data: X" and a blank line each), then at most the
            # start of the next line. Split at the blank lines; anything else takes the general path.
            cut = buf.rfind(b"\n\n")
            if cut >= 0 and b"\n" not in buf[cut + 2:]:
                head = buf[:cut]
                events = head.split(b"\n\n")
                # no newline but the separators, and each separator followed by "data: "
                if head.count(b"\n") == 2 * len(events) - 2 and head.count(b"\n\ndata: ") == len(events) - 1:
                    self._rest = buf[cut + 2:]
                    return [e[6:] for e in events]
        if b"\r" in buf:
            if buf.endswith(b"\r"):
                self._after_cr = True
            lines = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        else:
            lines = buf.split(b"\n")
        self._rest = lines.pop()  # after the last line end (empty when the chunk ended a line)
        out: list[bytes] = []
        data = self._data
        for line in lines:
            if not line:  # a blank line dispatches the event
                if data:
                    out.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data = self._data = []
                continue
            if line[:5] == b"data:":
                value = line[5:]
                data.append(value[1:] if value[:1] == b" " else value)
            elif line == b"data":  # a field name alone: an empty value
                data.append(b"")
            elif line[:6] == b"error:":  # llama.cpp's server before PR #16109: `error: {...}`, an event
                out.append(_error_field(line[6:]))
            elif line[:1] == b"{":  # a bare JSON line (Ollama's OpenAI layer writes its errors so): an event
                out.append(line)
            # comments (":...") and other fields (event, id, retry) carry nothing we use
        return out

    def close(self) -> list[bytes]:
        """At the end of the stream: the data of an event left without its blank line (if any)."""
        out = self.feed(b"\n\n") if (self._rest or self._data) else []
        self._rest, self._data, self._after_cr = b"", [], False
        return out


def _error_field(value: bytes) -> bytes:
    """llama.cpp's `error:` field value as an OpenAI-style error event's data: {"error": value} (the
    value as a JSON string when it is not a JSON object)."""
    value = value[1:] if value[:1] == b" " else value
    try:
        is_object = isinstance(json.loads(value), dict)
    except ValueError:
        is_object = False
    if not is_object:
        value = json.dumps(value.decode("utf-8", "replace")).encode()
    return b'{"error":' + value + b"}"
