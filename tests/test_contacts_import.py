"""The CSV import's reading of a file: bad bytes, overlong lines, unterminated quotes, the
delimiter, duplicated URNs, and what is said when a file is refused halfway (issue #9).

Over real HTTP on the test Valkey (the ``api`` fixture of test_server), through the CLI, and the
reader alone (a property test against Python's csv module, chunked at random places).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cli.main import main as cli_main
from bot.work.contacts_import import FirstLines
from bot.work.csvread import MAX_RECORD, CsvReader, CsvRefused
from tests.support.api import AUTH, Api, assert_error


async def post(api: Api, data: bytes) -> tuple[int, Any]:
    headers = {**AUTH, "Content-Type": "text/csv"}
    body = io.BytesIO(data)  # aiohttp warns about large raw bytes bodies
    async with api.client.post("/api/v1/contacts/import", data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def find(api: Api, urn: str) -> dict[str, Any]:
    status, found = await api.get("/api/v1/contacts", params={"urn": urn})
    assert status == 200, found
    [contact] = found["contacts"]
    return dict(contact)


def rows(n: int, start: int = 0) -> str:
    return "".join(f"ext:r-{i},Name {i}\n" for i in range(start, start + n))


async def test_an_unterminated_quote_is_refused_naming_its_line(api: Api) -> None:
    text = "urn,name\next:a,Ana\n" + 'ext:b,"Bruno\n' + rows(60_000)  # about 1.5 MB after it
    status, body = await post(api, text.encode())
    assert_error(status, body, 400, "bad_request")
    assert "line 3" in body["error"]["message"] and "quote" in body["error"]["message"]
    assert body["error"]["details"]["line"] == 3
    # the row before it was imported, and the answer says so
    assert body["error"]["details"]["imported"] == {
        "rows": 1,
        "created": 1,
        "updated": 0,
        "failed": 0,
    }
    assert (await find(api, "ext:a"))["name"] == "Ana"


async def test_a_10_mb_line_is_refused_naming_its_line(api: Api) -> None:
    status, body = await post(api, b"urn,name\next:a," + b"x" * 10_000_000 + b"\n")
    assert_error(status, body, 400, "bad_request")
    assert body["error"]["details"]["line"] == 2
    assert "line 2" in body["error"]["message"] and "64 KiB" in body["error"]["message"]


async def test_a_latin1_file_is_refused_naming_the_line(api: Api) -> None:
    text = "urn,name\next:a,Ana\next:b,José\n"
    status, body = await post(api, text.encode("latin-1"))
    assert_error(status, body, 400, "bad_request")
    message = body["error"]["message"]
    assert "line 3" in message and "UTF-8" in message and "codec" not in message
    assert body["error"]["details"]["line"] == 3


async def test_a_utf16_file_is_refused_as_such(api: Api) -> None:
    status, body = await post(api, "urn,name\next:a,Ana\n".encode("utf-16"))
    assert_error(status, body, 400, "bad_request")
    assert "UTF-16" in body["error"]["message"]


@pytest.mark.parametrize("delimiter", [";", "\t", ","])
async def test_the_delimiter_is_detected(api: Api, delimiter: str) -> None:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(["phone", "name", "groups"])
    writer.writerow(["+5511987650100", "Ana; Maria", "Clientes;VIP"])
    writer.writerow(["+5511987650101", "Bruno, Lee", "Clientes"])
    status, body = await post(api, ("\ufeff" + out.getvalue()).encode())  # Excel's BOM
    assert status == 200, body
    assert (body["rows"], body["created"], body["failed"]) == (2, 2, 0)
    ana = await find(api, "whatsapp:+5511987650100")
    assert (ana["name"], ana["groups"]) == ("Ana; Maria", ["Clientes", "VIP"])


async def test_a_duplicated_urn_is_reported_on_its_row(api: Api) -> None:
    text = (
        (
            "urn,name,groups\n"
            "whatsapp:+5511987650200,Ana,A\n"
            "ext:other,Otto,A\n"
            "whatsapp:+55 11 98765-0200,Ana B,B\n"  # the same URN, written another way
        )
        + rows(1500)
        + "ext:other,Otto 2,\n"
    )  # and one in a later chunk
    status, body = await post(api, text.encode())
    assert status == 200, body
    assert (body["rows"], body["created"], body["failed"]) == (1504, 1502, 2)
    assert [(e["row"], e["code"]) for e in body["errors"]] == [
        (4, "duplicate_urn"),
        (1505, "duplicate_urn"),
    ]
    assert "line 2" in body["errors"][0]["message"]
    assert "line 3" in body["errors"][1]["message"]
    ana = await find(api, "whatsapp:+5511987650200")
    assert (ana["name"], ana["groups"]) == ("Ana", ["A"])  # the first row, not overwritten


async def test_a_refusal_after_chunks_were_written_reports_the_counts(api: Api) -> None:
    data = ("urn,name\n" + rows(2500)).encode() + b"ext:late,Jos\xe9\n" + rows(10).encode()
    status, body = await post(api, data)
    assert_error(status, body, 400, "bad_request")
    details = body["error"]["details"]
    assert details["line"] == 2502
    assert details["imported"] == {"rows": 2500, "created": 2500, "updated": 0, "failed": 0}
    assert "2,500 rows before it were imported" in body["error"]["message"]
    assert (await find(api, "ext:r-2499"))["name"] == "Name 2499"


def test_cli_names_the_line_of_a_bad_file(
    tmp_path: Path, valkey_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[redis]\nurl = "{valkey_url}"\n', encoding="utf-8")
    csv_file = tmp_path / "c.csv"
    csv_file.write_bytes("urn;name\next:cli-1;Ana\next:cli-2;Andrés\n".encode("cp1252"))
    code = cli_main(["--config", str(config), "contacts", "import", str(csv_file)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{csv_file}:3:" in err and "UTF-8" in err and "1 row before it" in err


# -- the reader alone --------------------------------------------------------------------------
def read_all(data: bytes, cuts: list[int]) -> list[tuple[int, list[str]]]:
    reader = CsvReader()
    out: list[tuple[int, list[str]]] = []
    last = 0
    for cut in [*sorted({min(c, len(data)) for c in cuts}), len(data)]:
        out += reader.feed(data[last:cut])
        last = cut
    out += reader.end()
    return out


cell = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"), max_size=12
)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([",", ";", "\t"]),
    st.lists(st.lists(cell, min_size=2, max_size=4), max_size=8),
    st.sampled_from(["\n", "\r\n"]),
    st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_the_reader_reads_what_the_csv_module_writes(
    delimiter: str, body: list[list[str]], ending: str, cuts: list[int]
) -> None:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=ending)
    writer.writerow(["urn", "name", "field:a", "field:b"])
    for row in body:
        writer.writerow(row)
    text = out.getvalue()
    got = read_all(text.encode(), cuts)
    expected = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    assert [cells for _, cells in got] == expected
    # line numbers: each record starts on the line after the previous record's last line
    line = 1
    for (number, _), cells in zip(got, expected, strict=True):
        assert number == line
        line += sum(c.count("\n") for c in cells) + 1


def test_the_reader_refuses_a_runaway_quote_without_reading_on() -> None:
    reader = CsvReader()
    assert list(reader.feed(b'urn,name\next:1,"open\n')) == [(1, ["urn", "name"])]
    fed = 0
    with pytest.raises(CsvRefused) as refused:
        for _ in range(1000):  # 64 MB if it read on; it must stop at the record limit
            list(reader.feed(b"ext:2,more text\n" * 4096))
            fed += 1
    assert fed * 16 * 4096 <= 2 * MAX_RECORD
    assert refused.value.line == 2


def test_a_file_ending_inside_a_quote_is_refused() -> None:
    reader = CsvReader()
    list(reader.feed(b'urn,name\next:1,"open\next:2,x\n'))
    with pytest.raises(CsvRefused) as refused:
        list(reader.end())
    assert refused.value.line == 2
    assert json.dumps(str(refused.value))  # a message for people


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from([f"ext:{n}" for n in range(3000)]), max_size=3000))
def test_first_lines_remembers_like_a_dict(urns: list[str]) -> None:
    table, expected = FirstLines(), {}
    for line, urn in enumerate(urns, start=2):
        assert table.first(urn, line) == expected.setdefault(urn, line)
