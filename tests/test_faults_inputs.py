"""Hostile inputs (issue 11): bad text, slow and huge data sources, absurd numbers and options, pipes, a corrupt
index, terminal escapes, tampered reports. Each ends in a named error and exit 2 (or a failed report, exit 1),
never a traceback, a hang or a store that crashes the next run. Real servers, real pipes, real processes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from helpers import communicate, project_dict

from zerosite import store
from zerosite.cli import main
from zerosite.project import LIMITS, parse_project, validate_batch
from zerosite.rendering import eok, num, pct
from zerosite.sample import sample_projects
from zerosite.sources import HttpSource, SourceError, SourceSettings
from zerosite.store import ReportRow, ReportStore, recent_reports, search_reports
from zerosite.testing import ProjectServer

ZEROSITE = [sys.executable, "-m", "zerosite"]


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def invoke(cli: CliRunner, *args: str, input: str | None = None) -> Result:
    """Run the CLI in-process; a traceback (any exception but the CLI's own exit) fails the test."""
    result = cli.invoke(main, list(args), input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"traceback for {args}: {result.exception!r}\n{result.output}") from result.exception
    return result


def write_projects(path: Path, projects: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(projects), encoding="utf-8")  # ensure_ascii: a lone surrogate becomes "\udc80"
    return path


def one_line_error(result: Result) -> str:
    """The ``error:`` line the CLI printed; there is exactly one."""
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


# --- 2. A lone surrogate never passes validation, and never breaks the index ---------------------------------


def test_a_lone_surrogate_in_the_file_is_rejected_naming_the_field(cli: CliRunner, tmp_path: Path) -> None:
    projects = sample_projects(3)
    projects[2]["road_address"] = "서울특별시\udc80 강남구"
    out = tmp_path / "out"
    result = invoke(cli, "render", "--projects", str(write_projects(tmp_path / "p.json", projects)), "--out", str(out))
    assert result.exit_code == 2, result.output
    assert "projects[2].road_address: not valid text (lone surrogate at position 5)" in result.output
    assert not out.exists()


def test_a_lone_surrogate_from_the_http_source_fails_that_project_and_the_rerun_works(
    cli: CliRunner, tmp_path: Path
) -> None:
    projects = sample_projects(3)
    bad_id = projects[1]["id"]
    served: dict[str, Any] = {p["id"]: {} for p in projects}
    served[bad_id] = b'{"jibun_address": "\\udc80 1-1"}'  # valid JSON, decoded as a lone surrogate
    path = write_projects(tmp_path / "p.json", projects)
    out = tmp_path / "out"
    with ProjectServer(served, latency_s=0) as server:
        for _ in range(2):  # every rerun works too: the index holds nothing that breaks it
            result = invoke(cli, "render", "--projects", str(path), "--out", str(out), "--data-url", server.url, "-q")
            assert result.exit_code == 1, result.output
            assert f"failed: {bad_id}/M2: fetch failed: " in result.output
            assert ".jibun_address: not valid text (lone surrogate at position 0)" in result.output
    rows = recent_reports(out / "index.sqlite", 100)
    assert {(r.project_id, r.status) for r in rows} == {(p["id"], "written") for p in projects if p["id"] != bad_id} | {
        (bad_id, "failed")
    }
    assert invoke(cli, "reports", "--db", str(out / "index.sqlite")).exit_code == 0


def test_the_index_stores_a_lone_surrogate_escaped_instead_of_crashing(tmp_path: Path) -> None:
    with ReportStore(tmp_path / "out") as store:
        store.record(ReportRow("p1", "M2", address="서울 \udc80 마포구", status="failed", error="boom \ud800"))
    with ReportStore(tmp_path / "out") as store:  # the next run opens it
        (row,) = store.recent()
    assert (row.address, row.error) == ("서울 \\udc80 마포구", "boom \\ud800")
    assert [r.project_id for r in search_reports(tmp_path / "out" / "index.sqlite", "마포구")] == ["p1"]


# --- 3. Every fetch has a total deadline and a body limit ------------------------------------------------------


def raw_for_server(project_id: str = "p-001") -> dict[str, Any]:
    return project_dict(id=project_id)


def http_source(url: str, **settings: Any) -> HttpSource:
    source = HttpSource()
    source.open(SourceSettings(url=url, **{"retries": 0, "backoff_s": 0.0, **settings}))
    return source


def test_a_server_that_drips_a_byte_at_a_time_hits_the_deadline() -> None:
    # The body would take minutes at one byte per 0.2 s; no single read waits longer than timeout_s.
    with ProjectServer({"p-001": raw_for_server()}, latency_s=0, drip_s=0.2) as server:
        source = http_source(server.url, timeout_s=1.0, deadline_s=1.5, retries=2)
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"no complete answer within 1.5 s \(the fetch deadline\)"):
            source.fetch(parse_project(raw_for_server()))
        assert time.monotonic() - started < 3.0
        source.close()


def test_the_async_fetch_has_the_same_deadline() -> None:
    with ProjectServer({"p-001": raw_for_server()}, latency_s=0, drip_s=0.2) as server:
        source = http_source(server.url, timeout_s=1.0, deadline_s=1.5, retries=2)

        async def fetch() -> None:
            try:
                await source.afetch(parse_project(raw_for_server()))
            finally:
                await source.aclose()

        started = time.monotonic()
        with pytest.raises(SourceError, match=r"within 1.5 s"):
            asyncio.run(fetch())
        assert time.monotonic() - started < 2.5


def test_fetch_timeout_on_the_command_line_fails_the_project_in_time(cli: CliRunner, tmp_path: Path) -> None:
    path = write_projects(tmp_path / "p.json", [raw_for_server()])
    with ProjectServer({"p-001": raw_for_server()}, latency_s=0, drip_s=0.2) as server:
        started = time.monotonic()
        result = invoke(
            cli,
            "render",
            "--projects",
            str(path),
            "--out",
            str(tmp_path / "out"),
            "--data-url",
            server.url,
            "--fetch-timeout",
            "1",
            "-q",
        )
    assert time.monotonic() - started < 5.0
    assert result.exit_code == 1, result.output
    assert "fetch failed: project 'p-001': cannot fetch " in result.output
    assert "no complete answer within 1 s (the fetch deadline)" in result.output


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_huge_streamed_body_is_cut_off_at_the_limit(mode: str) -> None:
    with ProjectServer({"p-001": raw_for_server()}, latency_s=0, pad_to_bytes=100_000_000) as server:
        source = http_source(server.url, max_body_bytes=1_000_000)
        project = parse_project(raw_for_server())

        async def fetch() -> None:
            try:
                await source.afetch(project)
            finally:
                await source.aclose()

        with pytest.raises(SourceError, match=r"the response body is over the limit of 1,000,000 bytes"):
            if mode == "sync":
                source.fetch(project)
            else:
                asyncio.run(fetch())
        time.sleep(0.2)  # the server notices the closed connection
        assert server.bytes_sent < 30_000_000  # stopped early: not 100 MB
        source.close()


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    body = json.dumps(raw_for_server()).encode() + b" " * 2_000_000
    with ProjectServer({"p-001": body}, latency_s=0) as server:
        source = http_source(server.url, max_body_bytes=1_000_000)
        with pytest.raises(SourceError, match=r"response body of 2,000,\d{3} bytes is over the limit"):
            source.fetch(parse_project(raw_for_server()))
        source.close()


def test_a_padded_body_under_the_limit_is_read_whole() -> None:
    with ProjectServer({"p-001": raw_for_server()}, latency_s=0, pad_to_bytes=200_000) as server:
        source = http_source(server.url, max_body_bytes=1_000_000)
        assert source.fetch(parse_project(raw_for_server())).id == "p-001"
        source.close()


def test_max_body_on_the_command_line(cli: CliRunner, tmp_path: Path) -> None:
    path = write_projects(tmp_path / "p.json", [raw_for_server()])
    with ProjectServer({"p-001": raw_for_server()}, latency_s=0, pad_to_bytes=3_000_000) as server:
        args = ["render", "--projects", str(path), "--data-url", server.url, "-q"]
        result = invoke(cli, *args, "--out", str(tmp_path / "a"), "--max-body", "2MB")
        assert result.exit_code == 1, result.output
        assert "over the limit of 2,000,000 bytes" in result.output
        assert invoke(cli, *args, "--out", str(tmp_path / "b"), "--max-body", "4MiB").exit_code == 0
    assert SourceSettings().deadline_s == 30.0 and SourceSettings().max_body_bytes == 5_000_000


# --- 10. Absurd numbers, nesting and options are exit 2 with one line, never a traceback -----------------------


def with_area(digits: str) -> str:
    """A valid projects file whose land area is ``digits`` verbatim."""
    return json.dumps([project_dict(land_area_sqm=123456789)]).replace("123456789", digits)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            with_area("1" + "0" * 400),
            "projects[0].land_area_sqm: must be <= 10,000,000, got an integer of 401 digits",
            id="10**400",
        ),
        pytest.param(with_area("1e400"), "projects[0].land_area_sqm: must be finite, got inf", id="1e400"),
        pytest.param(
            with_area("7" * 5000),
            f"p.json: not valid JSON: a number has more than {sys.get_int_max_str_digits()} digits",
            id="5000-digits",
        ),
        pytest.param("[" * 100_000 + "]" * 100_000, "p.json: not valid JSON: nested too deeply", id="nested-lists"),
        pytest.param('{"a":' * 100_000 + "1" + "}" * 100_000, "p.json: not valid JSON: nested too deeply", id="dicts"),
    ],
)
def test_absurd_json_is_exit_2(cli: CliRunner, tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(text, encoding="utf-8")
    result = invoke(cli, "render", "--projects", str(path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output


def test_an_integer_of_400_digits_is_named_with_its_field(tmp_path: Path) -> None:
    raw = project_dict(land_area_sqm=10**400, official_price_per_sqm=7 * 10**5000)
    raw["demographics"]["youth"] = -(10**400)
    _, errors = validate_batch([("projects[0]", raw)])
    assert errors == [
        "projects[0].demographics.youth: must be >= 0, got an integer of 401 digits",
        "projects[0].land_area_sqm: must be <= 10,000,000, got an integer of 401 digits",
        "projects[0].official_price_per_sqm: must be <= 1,000,000,000, got an integer of 5001 digits",
    ]


def test_the_same_nesting_in_json_lines_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(project_dict()) + "\n" + "[" * 100_000 + "\n", encoding="utf-8")
    result = invoke(CliRunner(), "render", "--projects", str(path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "p.jsonl:2: not valid JSON: nested too deeply" in result.output


@pytest.fixture
def index(cli: CliRunner, tmp_path: Path) -> Path:
    out = tmp_path / "made"
    assert invoke(cli, "render", "--sample", "2", "--out", str(out), "-q").exit_code == 0
    return out / "index.sqlite"


@pytest.mark.parametrize(
    "args",
    [
        ["search", "서울", "--limit", "1" + "0" * 30],
        ["search", "서울", "--limit", "1e20"],
        ["reports", "--recent", "1" + "0" * 30],
        ["reports", "--recent", "1e20"],
    ],
    ids=lambda args: " ".join(args[:1] + args[-2:])[:40],
)
def test_absurd_row_counts_are_exit_2(cli: CliRunner, index: Path, args: list[str]) -> None:
    result = invoke(cli, *args, "--db", str(index))
    assert result.exit_code == 2, result.output
    assert "Invalid value for" in result.output


@pytest.mark.parametrize(
    "option",
    [
        ["--chunksize", "1e20"],
        ["--chunksize", "1" + "0" * 30],
        ["--timeout", "nan"],
        ["--timeout", "inf"],
        ["--timeout", "-1"],
        ["--fetch-timeout", "nan"],
        ["--fetch-timeout", "inf"],
        ["--fetch-timeout", "0"],
        ["--max-body", "0"],
        ["--max-body", "lots"],
        ["--max-body", "1" + "0" * 30],
    ],
    ids=" ".join,
)
def test_absurd_batch_options_are_exit_2(cli: CliRunner, tmp_path: Path, option: list[str]) -> None:
    result = invoke(cli, "generate", "--sample", "1", "--out", str(tmp_path / "out"), *option)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option[0]}'" in result.output
    assert not (tmp_path / "out").exists()


def test_nan_latency_for_profile_is_exit_2(cli: CliRunner, tmp_path: Path) -> None:
    result = invoke(cli, "profile", "--latency-ms", "nan", "--out", str(tmp_path))
    assert result.exit_code == 2 and "Invalid value for '--latency-ms'" in result.output


DUPLICATE_STRATEGY = """
from zerosite import hookimpl
from zerosite.types import Strategy


class Again(Strategy):
    name = "sequential"
    description = "a second strategy named sequential"

    def start(self, config, options):
        raise NotImplementedError


@hookimpl
def zerosite_register_strategies(register):
    register(Again())
"""


@pytest.mark.parametrize(
    "command",
    [["strategies"], ["generate", "--sample", "1", "--out", "OUT"], ["profile", "--sample", "1", "--out", "OUT"]],
    ids=lambda command: command[0],
)
def test_a_duplicate_strategy_name_from_a_plugin_is_exit_2(
    cli: CliRunner, fresh_plugins: None, tmp_path: Path, command: list[str]
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "again.py").write_text(DUPLICATE_STRATEGY, encoding="utf-8")
    args = [arg.replace("OUT", str(tmp_path / "out")) for arg in command]
    result = invoke(cli, "--plugins-dir", str(plugins), *args)
    assert result.exit_code == 2, result.output
    line = one_line_error(result)
    assert "strategy 'sequential' is registered by more than one plugin: zerosite.strategies, again" in line


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "other-schema", "empty-file"],
)
@pytest.mark.parametrize("command", ["search", "reports"])
def test_search_and_reports_on_a_corrupt_index_are_exit_2(
    cli: CliRunner, index: Path, tmp_path: Path, damage: str, command: str
) -> None:
    bad = tmp_path / "bad.sqlite"
    if damage == "garbage":
        bad.write_bytes(b"this is not a database, just some bytes" * 200)
    elif damage == "truncated":
        with sqlite3.connect(index) as conn:  # fold the WAL in, then cut the file short
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        data = index.read_bytes()
        bad.write_bytes(data[: len(data) // 3])
    elif damage == "other-schema":
        with sqlite3.connect(bad) as conn:
            conn.execute("CREATE TABLE reports (x)")
            conn.execute("INSERT INTO reports VALUES (1)")
    else:
        bad.write_bytes(b"")  # SQLite reads an empty file as an empty database: no table
    args = ["search", "서울"] if command == "search" else ["reports"]
    result = invoke(cli, *args, "--db", str(bad))
    assert result.exit_code == 2, result.output
    assert one_line_error(result).startswith(f"error: cannot read the report index {bad}: ")


def test_search_and_reports_leave_nothing_beside_the_index(cli: CliRunner, index: Path) -> None:
    """A read-only connection cannot remove a WAL database's -wal and -shm files when it closes last: every
    ``search`` left both in the output folder (to be copied with it). Nor can the reader write."""
    before = sorted(index.parent.iterdir())
    for args in (["search", "서울"], ["reports"]):
        assert invoke(cli, *args, "--db", str(index)).exit_code == 0
        assert sorted(index.parent.iterdir()) == before
    with pytest.raises(sqlite3.OperationalError, match="readonly"), closing(store.open_for_reading(index)) as conn:
        conn.execute("DELETE FROM reports")


READ_ONLY = """
mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" || exit 0
touch "$0/probe" 2>/dev/null && exit 0
echo READ-ONLY; exec "$@"
"""


def in_read_only_folder(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``zerosite args`` where ``folder`` is a read-only mount: in a private mount namespace (needs root and
    ``unshare``); skip the test where that cannot be made."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1)")
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", READ_ONLY, str(folder), *ZEROSITE, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if not done.stdout.startswith("READ-ONLY"):
        pytest.skip(f"cannot mount a folder read-only here: {done.stderr.strip()}")
    return done


def test_search_and_reports_read_a_clean_index_on_read_only_media(index: Path) -> None:
    for args in (["search", "서울"], ["reports"]):
        done = in_read_only_folder(index.parent, *args, "--db", str(index))
        assert done.returncode == 0, done.stderr
        assert "written" in done.stdout and "Traceback" not in done.stderr


def test_an_index_whose_log_cannot_be_read_on_read_only_media_is_exit_2(index: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    with sqlite3.connect(index) as writer:  # a write left in the WAL, not yet in the database file
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("UPDATE reports SET size_bytes = size_bytes + 1")
        writer.commit()
        shutil.copy(index, folder / "index.sqlite")
        shutil.copy(f"{index}-wal", folder / "index.sqlite-wal")  # but not the -shm SQLite needs to read it
    for args in (["search", "서울"], ["reports"]):
        done = in_read_only_folder(folder, *args, "--db", str(folder / "index.sqlite"))
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"error: cannot read the report index {folder / 'index.sqlite'}: ")
        assert len(done.stderr.splitlines()) == 1


# --- 11. The input is read once: stdin (- or /dev/stdin) and a FIFO --------------------------------------------


def run_zerosite(*args: str, stdin: bytes | None = None, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*ZEROSITE, *args], input=stdin, capture_output=True, timeout=120, cwd=cwd, env={**os.environ, "NO_COLOR": "1"}
    )


@pytest.mark.parametrize("name", ["-", "/dev/stdin"])
@pytest.mark.parametrize("form", ["json", "jsonl"])
def test_projects_from_standard_input(tmp_path: Path, name: str, form: str) -> None:
    projects = sample_projects(3)
    text = json.dumps(projects) if form == "json" else "\n".join(map(json.dumps, projects)) + "\n"
    done = run_zerosite("render", "--projects", name, "--out", "out", "-q", stdin=text.encode(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert b"Traceback" not in done.stderr
    assert len(list((tmp_path / "out").glob("*/*.html"))) == 15


def test_projects_from_standard_input_in_process(cli: CliRunner, tmp_path: Path) -> None:
    text = json.dumps({"projects": sample_projects(2)}, indent=2)
    result = invoke(cli, "render", "--projects", "-", "--out", str(tmp_path / "out"), "-q", input=text)
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*/*.html"))) == 10


def test_invalid_standard_input_is_exit_2_naming_the_line(cli: CliRunner, tmp_path: Path) -> None:
    text = json.dumps(project_dict(id="a")) + "\n{oops\n"
    result = invoke(cli, "render", "--projects", "-", "--out", str(tmp_path / "out"), input=text)
    assert result.exit_code == 2
    assert "<stdin>:2: not valid JSON" in result.output


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[tuple[Path, threading.Event]]:
    """A named pipe that a thread fills with three sample projects (a JSON list) once a reader opens it."""
    path = tmp_path / "projects.fifo"
    os.mkfifo(path)
    written = threading.Event()

    def feed() -> None:
        with path.open("w", encoding="utf-8") as pipe:  # blocks until the reader opens the other end
            pipe.write(json.dumps(sample_projects(3)))
        written.set()

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    yield path, written
    if thread.is_alive():  # the reader never came: open the pipe so the thread can finish
        with path.open("r", encoding="utf-8") as pipe:
            pipe.read()
    thread.join(timeout=5)


def test_projects_from_a_fifo_are_read_once(tmp_path: Path, fifo: tuple[Path, threading.Event]) -> None:
    path, written = fifo
    done = run_zerosite("render", "--projects", str(path), "--out", "out", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert written.is_set()
    assert len(list((tmp_path / "out").glob("*/*.html"))) == 15


@pytest.mark.parametrize("command", ["generate", "render"])
def test_closed_standard_input_is_exit_2_naming_it(tmp_path: Path, command: str) -> None:
    """Audit finding 7: ``--projects -`` with ``<&-`` was an AttributeError traceback, exit 1."""
    done = subprocess.run(
        [*ZEROSITE, command, "--projects", "-", "--out", "out", "-q"],
        capture_output=True,
        timeout=120,
        cwd=tmp_path,
        preexec_fn=lambda: os.close(0),  # as the shell's <&-
    )
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert "<stdin>: cannot read: standard input is closed" in stderr
    assert not (tmp_path / "out").exists()


def test_a_byte_order_mark_through_standard_input_is_skipped(tmp_path: Path) -> None:
    """Audit finding 11: a JSON list with a BOM through a pipe was read as JSON Lines (151 errors for 2 projects)."""
    text = "\ufeff" + json.dumps(sample_projects(3), indent=2, ensure_ascii=False)
    done = run_zerosite("render", "--projects", "-", "--out", "out", "-q", stdin=text.encode(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert len(list((tmp_path / "out").glob("*/*.html"))) == 15


def test_a_file_with_a_byte_order_mark_is_read(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(sample_projects(2)), encoding="utf-8-sig")  # a BOM first, as Windows tools write
    result = invoke(cli, "render", "--projects", str(path), "--out", str(tmp_path / "out"), "-q")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*/*.html"))) == 10


def test_a_key_given_twice_is_an_input_problem_that_skip_invalid_skips(cli: CliRunner, tmp_path: Path) -> None:
    """Audit finding 10: ``"land_area_sqm": 1650.0, "land_area_sqm": 16500.0`` made a report of 16,500 ㎡."""
    projects = sample_projects(2)
    text = json.dumps(projects).replace('"land_area_sqm": ', '"land_area_sqm": 1650.0, "land_area_sqm": ', 1)
    path = tmp_path / "p.json"
    path.write_text(text.replace('"id": "p0002', '"id": 7, "id": "p0002', 1), encoding="utf-8")
    args = ["render", "--projects", str(path), "--out", str(tmp_path / "out")]
    result = invoke(cli, *args)
    assert result.exit_code == 2
    problems = [line.strip() for line in result.output.splitlines() if line.startswith("  ")]
    assert problems == ["projects[0].land_area_sqm: given twice", "projects[1].id: given twice"]
    assert not (tmp_path / "out").exists()
    assert invoke(cli, *args, "--skip-invalid", "-q").exit_code == 0
    assert not list((tmp_path / "out").glob("*/*.html"))  # both projects had a key twice: both skipped
    path.write_text(text, encoding="utf-8")
    assert invoke(cli, *args, "--skip-invalid", "-q").exit_code == 0
    assert {f.parent.name for f in (tmp_path / "out").glob("*/*.html")} == {projects[1]["id"]}


# --- 12. Ctrl-C while the command still imports: exit 130 and one line, no traceback ------------------------------

INTERRUPTED_WHILE_IMPORTING = """
import importlib, os, runpy, signal, sys
entry, module = sys.argv[1:3]
# As at a terminal: a background job of a shell without job control (CI runs one) starts with SIGINT ignored, and
# Python then installs no handler of its own.
signal.signal(signal.SIGINT, signal.default_int_handler)

class CtrlC:  # a real SIGINT, delivered while `module` is being imported
    def find_spec(self, name, path=None, target=None):
        if name == module:
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlC())
sys.argv = ["zerosite", "generate", "--sample", "1", "--out", "out", "-q"]
if entry == "-m":
    runpy.run_module("zerosite", run_name="__main__", alter_sys=True)
else:
    name, _, function = entry.partition(":")
    sys.exit(getattr(importlib.import_module(name), function)())
"""


def console_script() -> str:
    """What the ``zerosite`` command runs: its ``[project.scripts]`` entry in pyproject.toml."""
    import tomllib

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["scripts"]["zerosite"])


@pytest.mark.parametrize("entry", ["script", "-m"])
@pytest.mark.parametrize("module", ["zerosite.project", "click", "zerosite.engine"])
def test_ctrl_c_while_importing_is_exit_130_without_a_traceback(tmp_path: Path, entry: str, module: str) -> None:
    """Audit finding 12: the signal came before any handler, in the imports of the package (``zerosite.project``,
    from ``zerosite/__init__.py``) or of the command line: a traceback, exit -2."""
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_WHILE_IMPORTING, console_script() if entry == "script" else "-m", module],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr == "error: interrupted\n"
    assert not (tmp_path / "out").exists()


def test_the_entry_point_imports_nothing_before_it_runs() -> None:
    """The window a Ctrl-C traceback could come in: importing ``zerosite.__main__`` loads no other module of
    ``zerosite`` and no library; the package's names still import."""
    script = (
        "import sys; before = set(sys.modules); import zerosite.__main__; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert set(done.stdout.split()) - {"__future__"} == {"zerosite", "zerosite.__main__"}
    from zerosite import Project, ReportModule, hookimpl

    assert Project.__module__ == "zerosite.project" and callable(hookimpl) and ReportModule is not None


def test_ctrl_c_in_a_command_without_its_own_handling_is_exit_130() -> None:
    """``sample``, ``search`` and the like let click turn a Ctrl-C into ``Aborted!`` and exit 1, where ``generate``
    said ``error: interrupted`` and 130 (README's exit codes)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "zerosite", "sample", "10000000", "--jsonl"],
        stdout=subprocess.PIPE,  # bytes: the rest of a line cut by the stop need not be whole UTF-8
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as at a terminal (CI's jobs ignore it)
    )
    assert child.stdout is not None and child.stdout.readline().startswith(b"{")  # the command runs
    child.send_signal(signal.SIGINT)
    _, stderr = communicate(child, timeout=60)
    assert child.returncode == 130, stderr
    assert stderr == b"error: interrupted\n"


# --- Low: ids, negative zero, tiny areas, terminal escapes, tampered files ------------------------------------


def test_an_id_with_a_trailing_newline_is_rejected() -> None:
    _, errors = validate_batch([("projects[0]", project_dict(id="p1\n"))])
    assert errors == ["projects[0].id: holds a control character (U+000A) at position 2"]


def test_negative_zero_shows_as_zero(tmp_path: Path, cli: CliRunner) -> None:
    assert (num(-0.0), num(-0.0, 2), pct(-0.0), eok(-0.0)) == ("0", "0.00", "0.0%", "0.0억원")
    assert (num(-0.3), pct(-0.00001), num(-0.6)) == ("-0", "-0.0%", "-1")  # a loss too small to show keeps its sign
    path = write_projects(tmp_path / "p.json", [project_dict(road_width_m=-0.0, subway_distance_m=-0.0)])
    assert invoke(cli, "render", "--projects", str(path), "--out", str(tmp_path / "out"), "-q").exit_code == 0
    html = (tmp_path / "out" / "test-project" / "M2.html").read_text(encoding="utf-8")
    assert "0.0m" in html and "-0.0m" not in html and "-0m" not in html


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("land_area_sqm", 1e-300, "land_area_sqm: must be >= 1, got 1e-300"),
        ("land_area_sqm", 1e300, "land_area_sqm: must be <= 10,000,000, got 1e+300"),
        ("official_price_per_sqm", 10**12, "official_price_per_sqm: must be <= 1,000,000,000, got 1e+12"),
        ("road_width_m", 1e9, "road_width_m: must be <= 1,000, got 1e+09"),
        ("subway_distance_m", 1e300, "subway_distance_m: must be <= 1,000,000, got 1e+300"),
    ],
)
def test_numbers_outside_their_sane_range_are_rejected(field: str, value: float, message: str) -> None:
    _, errors = validate_batch([("projects[0]", project_dict(**{field: value}))])
    assert errors == [f"projects[0].{message}"]


def test_transaction_numbers_and_dates_outside_their_sane_range_are_rejected() -> None:
    sale = {
        "date": "0001-01-01",
        "area_sqm": 1e-300,
        "price_krw": 10**20,
        "distance_m": 1e12,
        "zone_type": "준공업지역",
    }
    _, errors = validate_batch([("projects[0]", project_dict(transactions=[sale]))])
    assert errors == [
        f"projects[0].transactions[0].date: must be between {LIMITS.earliest_date} and {LIMITS.latest_date}, "
        "got 0001-01-01",
        "projects[0].transactions[0].area_sqm: must be >= 1, got 1e-300",
        "projects[0].transactions[0].price_krw: must be <= 100,000,000,000,000, got 1e+20",
        "projects[0].transactions[0].distance_m: must be <= 1,000,000, got 1e+12",
    ]


def test_a_tiny_area_is_exit_2_not_a_failed_report(cli: CliRunner, tmp_path: Path) -> None:
    path = write_projects(tmp_path / "p.json", [project_dict(land_area_sqm=1e-300)])
    result = invoke(cli, "render", "--projects", str(path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "projects[0].land_area_sqm: must be >= 1, got 1e-300" in result.output


@pytest.mark.parametrize(
    ("control", "what"),
    [
        # "서울특별시 강남구 \u202e4321 로사은봉" shows in a browser as "... 봉은사로 1234": another address
        *[(char, "bidirectional control character") for char in ("\u202e", "\u2066", "\u200f")],
        # service audit: a NUL, a bell or a line break was written raw into every report and the index
        *[(char, "control character") for char in ("\x00", "\x07", "\n", "\x1b", "\x7f", "\x9b")],
    ],
)
def test_a_control_character_in_input_text_is_refused(cli: CliRunner, tmp_path: Path, control: str, what: str) -> None:
    path = write_projects(tmp_path / "p.json", [project_dict(road_address=f"서울특별시 강남구 {control}4321 로사은봉")])
    result = invoke(cli, "render", "--projects", str(path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    code = f"U+{ord(control):04X}"
    assert f"projects[0].road_address: holds a {what} ({code}) at position 10" in result.output
    assert not (tmp_path / "out").exists()


def test_json_lines_read_from_a_pipe_are_the_lines_read_from_the_file(cli: CliRunner, tmp_path: Path) -> None:
    """Batch audit: read whole from a pipe, JSON Lines were split at U+2028 and U+0085 too, which a JSON string may
    hold raw: four wrong errors, on lines the file does not have, where the file on disk gave the right one."""
    raw = [project_dict(id=f"p{i}", road_address=address) for i, address in enumerate(["서울", "서울 \u2028 강남"])]
    text = "".join(json.dumps(project, ensure_ascii=False) + "\n" for project in raw)
    (tmp_path / "p.jsonl").write_text(text, encoding="utf-8")
    problem = ":2.road_address: holds a line or paragraph separator (U+2028) at position 3"
    from_file = invoke(cli, "render", "--projects", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "out"))
    from_pipe = invoke(cli, "render", "--projects", "-", "--out", str(tmp_path / "out"), input=text)
    for result, name in [(from_file, "p.jsonl"), (from_pipe, "<stdin>")]:
        assert result.exit_code == 2
        assert [line.strip() for line in result.output.splitlines() if ".road_address" in line] == [name + problem]


def test_ids_one_folder_on_macos_or_windows_and_text_past_its_limit_are_refused(cli: CliRunner, tmp_path: Path) -> None:
    """Batch audit: ids that differ only in case were taken (one folder on macOS and Windows, the second project's
    reports over the first's), so were Windows device names (CON, aux: no folder there), and a 35-million-character
    address made 1.1 GB of reports."""
    projects = [
        project_dict(id="p5-hangangno"),
        project_dict(id="P5-Hangangno"),
        project_dict(id="aux"),
        project_dict(id="COM1.html"),
        project_dict(id="p9", road_address="가" * 1_001),
    ]
    result = invoke(cli, "render", "--projects", str(write_projects(tmp_path / "p.json", projects)), "--out", "out")
    assert result.exit_code == 2
    device = "names a device on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9): no folder can take it there, got"
    assert [line.strip() for line in result.output.splitlines()[:-1]] == [
        "projects[1].id: duplicate id 'P5-Hangangno' (first at projects[0], differing only in case from "
        "'p5-hangangno')",
        f'projects[2].id: {device} "aux"',
        f'projects[3].id: {device} "COM1.html"',
        "projects[4].road_address: must be at most 1,000 characters, got 1,001",
    ]
    assert not (tmp_path / "out").exists()


def test_an_output_folder_or_index_that_cannot_be_used_is_a_usage_error(cli: CliRunner, tmp_path: Path) -> None:
    """Batch audit: these exited 1, which says some reports failed, where nothing was made; a link to nowhere said only
    "File exists"."""
    (tmp_path / "afile").write_text("a file")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "notdb.sqlite").write_text("garbage")
    for args, said in [
        (["--out", str(tmp_path / "afile" / "sub")], "Not a directory"),
        (["--out", str(tmp_path / "dangling")], f"dangling links to {tmp_path / 'nowhere'}, which does not exist"),
        (["--out", str(tmp_path / "new"), "--db", str(tmp_path / "notdb.sqlite")], "file is not a database"),
    ]:
        result = invoke(cli, "generate", "--sample", "2", "-q", *args)
        assert result.exit_code == 2, result.output
        assert said in result.output
    assert not (tmp_path / "new").exists() and not (tmp_path / "nowhere").exists()


def test_a_missing_zone_is_missing(cli: CliRunner, tmp_path: Path) -> None:
    """It was "unknown zone null", where every other field absent is "missing" (service audit)."""
    raw = project_dict()
    del raw["zone_type"]
    result = invoke(cli, "render", "--projects", str(write_projects(tmp_path / "p.json", [raw])), "--out", "out")
    assert result.exit_code == 2
    assert "projects[0].zone_type: missing\n" in result.output


def test_search_and_reports_escape_terminal_control_characters(cli: CliRunner, tmp_path: Path) -> None:
    hostile = "서울 \x1b[2J\x1b]0;owned\x07 마포구 \x9b31m \u202e역순"
    out = tmp_path / "out"
    with ReportStore(out) as store:  # written as an index made before input refused bidirectional controls
        store.record(ReportRow("test-project", "M2", hostile))
    for args in (["search", "마포구"], ["reports"]):
        result = invoke(cli, *args, "--db", str(out / "index.sqlite"))
        assert result.exit_code == 0
        assert "test-project" in result.output
        for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
            assert raw not in result.output
        assert "\\x1b[2J\\x1b]0;owned\\x07" in result.output and "\\x9b31m \\u202e역순" in result.output


def test_verify_remakes_a_tampered_report(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["generate", "--sample", "2", "--out", str(out), "--json"]
    assert invoke(cli, *args).exit_code == 0
    report = next(out.glob("*/M3.html"))
    original = report.read_bytes()
    report.write_bytes(original.replace(b"</html>", b"<script>tampered()</script></html>"))
    plain = json.loads(invoke(cli, *args).output)
    assert (plain["written"], plain["skipped"]) == (0, 10)  # without --verify the index is trusted
    verified = json.loads(invoke(cli, *args, "--verify").output)
    assert (verified["written"], verified["skipped"]) == (5, 5)  # the tampered project is remade whole
    assert report.read_bytes() == original
    again = json.loads(invoke(cli, *args, "--verify").output)
    assert (again["written"], again["skipped"]) == (0, 10)
    report.unlink()
    assert json.loads(invoke(cli, *args, "--verify").output)["written"] == 5
