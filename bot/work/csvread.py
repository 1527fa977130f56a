"""Bytes of a CSV file in, (line number, cells) out: the reading half of the contacts import.

Fed in chunks as they arrive (an HTTP body, a file), so a file is never whole in memory, and the
work is linear in its size whatever it holds:

- lines end with ``\\n``, ``\\r\\n`` or ``\\r``; each line is decoded on its own, and a line that
  is not UTF-8 is refused naming it (a UTF-16 file, Excel's "Unicode text", is named as such);
- the delimiter is the one of ``,`` ``;`` and tab that the header line holds most of (Excel
  writes ``;`` where the decimal mark is a comma: es, pt, fr, de...);
- a quoted cell may span lines; a record (one line, or the lines of its quoted cells) longer
  than :data:`MAX_RECORD` is refused as soon as it is that long, so an unterminated quote or a
  10 MB line costs one record's worth of reading, not the rest of the file;
- a file that ends inside a quoted cell is refused naming the line where the cell opened.

A refusal is :class:`CsvRefused` with the line number; rows yielded before it are good.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

MAX_RECORD = 64 * 1024
DELIMITERS = (",", ";", "\t")  # in order of preference when a header holds none or ties
_LINE_ENDS = (b"\n", b"\r")


class CsvRefused(ValueError):
    """The file cannot be read on from ``line`` (1-based, the header is line 1)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


class CsvReader:
    def __init__(self) -> None:
        self.line = 0  # the last complete line read
        self.delimiter: str | None = None
        self._tail = b""  # an incomplete line, waiting for the next chunk
        self._record: list[str] = []  # lines of a record whose quoted cell is still open
        self._record_size = 0
        self._record_line = 0

    def feed(self, data: bytes) -> Iterator[tuple[int, list[str]]]:
        """The records completed by ``data`` (lazily: those before a refusal come out first)."""
        buffer = self._tail + data if self._tail else data
        lines = buffer.splitlines(keepends=True)
        # the last piece waits for more unless it surely ended ("\r" may be half of "\r\n")
        self._tail = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        for raw in lines:
            yield from self._line(raw)
        if len(self._tail) > MAX_RECORD:  # at once: not after reading the rest of the line
            raise self._too_long(self.line + 1)

    def end(self) -> Iterator[tuple[int, list[str]]]:
        """The last records, once the whole file was fed."""
        tail, self._tail = self._tail, b""
        if tail:
            yield from self._line(tail)
        if self._record:
            raise CsvRefused(
                self._record_line,
                f"line {self._record_line}: a quoted cell opens here and the file ends before "
                'it closes: is a closing " missing?',
            )

    # -- one line --------------------------------------------------------------------------
    def _line(self, raw: bytes) -> Iterator[tuple[int, list[str]]]:
        self.line += 1
        if len(raw) > MAX_RECORD:
            raise self._too_long(self.line)
        text = self._decode(raw)
        if self.delimiter is None:
            text = text.removeprefix("\ufeff")  # the BOM Excel writes before "CSV UTF-8"
            self.delimiter = max(DELIMITERS, key=lambda d: (text.count(d), -DELIMITERS.index(d)))
        if self._record:
            self._record.append(text)
            self._record_size += len(raw)
            if text.count('"') % 2:  # the open quote closes on this line
                yield from self._parse(self._record_line, self._record)
                self._record = []
            elif self._record_size > MAX_RECORD:
                raise CsvRefused(
                    self._record_line,
                    f"line {self._record_line}: a quoted cell opens here and does not close "
                    f'within {MAX_RECORD // 1024} KiB: is a closing " missing?',
                )
            return
        if '"' not in text:  # most lines: no quoting to undo
            body = text.rstrip("\r\n")
            yield self.line, body.split(self.delimiter) if body else []
        elif text.count('"') % 2:  # a quoted cell goes on to the next line
            self._record, self._record_size, self._record_line = [text], len(raw), self.line
        else:
            yield from self._parse(self.line, [text])

    def _parse(self, line: int, lines: list[str]) -> Iterator[tuple[int, list[str]]]:
        try:
            for cells in csv.reader(lines, delimiter=self.delimiter or ","):
                yield line, cells
        except csv.Error as exc:
            raise CsvRefused(line, f"line {line}: {exc}") from None

    def _decode(self, raw: bytes) -> str:
        if self.line == 1 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise CsvRefused(
                1, 'the file is UTF-16 ("Unicode text"): save it as CSV UTF-8 and import again'
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
            raise CsvRefused(
                self.line,
                f"line {self.line} is not UTF-8 (byte 0x{raw[exc.start]:02x} at column {column}):"
                ' save the file as CSV UTF-8 (in Excel: "CSV UTF-8 (comma delimited)")',
            ) from None
        if "\x00" in text:
            raise CsvRefused(self.line, f"line {self.line} holds a NUL character: not a text file")
        return text

    def _too_long(self, line: int) -> CsvRefused:
        return CsvRefused(
            line,
            f"line {line} is longer than {MAX_RECORD // 1024} KiB: not a contacts CSV "
            "(a line per contact)",
        )
