"""The command line as a user runs it: exit codes, what is written, what is said."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner

from zerosite.cli import _table, _width, main
from zerosite.sample import sample_projects

INJECTIONS = ["'; DROP TABLE reports; --", '" OR 1=1 --', "M2' OR '1'='1", "*", ")(", "<script>alert(1)</script>"]


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


@pytest.fixture
def made(cli: CliRunner, tmp_path: Path) -> Path:
    """An output folder with the reports of three sample projects."""
    out = tmp_path / "out"
    result = cli.invoke(main, ["render", "--sample", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_a_progress_bar_on_a_terminal_leaves_the_pool_to_fork(tmp_path: Path) -> None:
    """On a terminal the command shows a tqdm bar; tqdm's monitor thread made the process pool start by forkserver
    there (a process that runs threads must not fork), unlike the benchmark's and every run without a terminal,
    and ``auto`` reckoned with a fork server's start-up."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios
    import threading

    code = (
        "import multiprocessing\n"
        "asked = []\n"
        "real = multiprocessing.get_context\n"
        "multiprocessing.get_context = lambda method=None: (asked.append(method), real(method))[1]\n"
        "from zerosite.cli import main\n"
        "try:\n"
        "    main(['generate', '--sample', '6', '--strategy', 'process', '-w', '2', '--out', "
        f"{str(tmp_path / 'out')!r}], standalone_mode=False)\n"
        "finally:\n"
        "    print(sorted(set(map(str, asked))))\n"
    )
    terminal, child_end = pty.openpty()
    fcntl.ioctl(child_end, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 80 columns, as a terminal has
    shown: list[bytes] = []

    def read() -> None:
        with contextlib.suppress(OSError):  # the terminal closed
            while chunk := os.read(terminal, 4096):
                shown.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=child_end,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(child_end)
    reader.join(timeout=10)
    os.close(terminal)
    assert done.returncode == 0
    assert b"30/30" in b"".join(shown)  # the bar was shown
    assert done.stdout.splitlines()[-1] == "['fork']"


def test_without_a_bar_the_engine_is_told_of_no_report(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quiet, ``--json`` or off a terminal, nobody looks at each report: the engine gets no ``on_report`` and makes no
    outcome object per report (it did, for a bar that was not there: a few per cent of the parent's work)."""
    import zerosite.engine

    told: list[object] = []
    real = zerosite.engine.generate

    def generate(*args: object, **kwargs: object) -> object:
        told.append(kwargs["on_report"])
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zerosite.engine, "generate", generate)
    for extra in ([], ["-q"], ["--json"]):
        result = cli.invoke(main, ["generate", "--sample", "2", "-s", "sequential", "--out", str(tmp_path), *extra])
        assert result.exit_code == 0, result.output
    assert told == [None, None, None]


def test_generate_imports_neither_httpx_nor_asyncio(tmp_path: Path) -> None:
    """The default source and strategy use neither, and they were a quarter of the command's start-up
    (``bench/startup.py``): the http source, the async strategy and the service import them."""
    import subprocess
    import sys

    code = (
        "import sys; from zerosite.cli import main; "
        f"main(['generate', '--sample', '2', '-q', '--out', {str(tmp_path / 'out')!r}], standalone_mode=False); "
        "print(' '.join(sorted({'httpx', 'asyncio', 'rich'} & set(sys.modules))))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == ""
    assert len(list((tmp_path / "out").glob("*/*.html"))) == 10


@pytest.mark.parametrize("command", [["--version"], ["--help"], ["sample", "1"], ["search", "x", "--db", "{db}"]])
def test_commands_that_make_no_report_start_without_the_engine(tmp_path: Path, command: list[str]) -> None:
    """The engine, Jinja2 and the report modules were two fifths of ``zerosite --version``'s start (174 ms, 119
    without them: ``bench/startup.py``); a command that makes no report loads none of them, and SQLite only to
    read an index."""
    import subprocess
    import sys

    from zerosite.store import ReportStore

    with ReportStore(tmp_path):
        pass
    args = [part.replace("{db}", str(tmp_path / "index.sqlite")) for part in command]
    code = (
        "import sys; from zerosite.cli import main\n"
        f"try: main({args!r})\n"
        "except SystemExit: pass\n"
        "heavy = {'jinja2', 'zerosite.engine', 'zerosite.rendering', 'zerosite.strategies_auto', 'zerosite.caches',"
        " 'zerosite.modules.m2_appraisal', 'sqlite3'}\n"
        "print(' '.join(sorted(heavy & set(sys.modules))))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == ("sqlite3" if command[0] == "search" else ""), done.stdout


def test_help_everywhere(cli: CliRunner) -> None:
    for command in (
        [],
        ["modules"],
        ["strategies"],
        ["sample"],
        ["render"],
        ["generate"],
        ["search"],
        ["reports"],
        ["profile"],
    ):
        result = cli.invoke(main, [*command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, command


def test_modules_lists_the_five_built_ins(cli: CliRunner) -> None:
    result = cli.invoke(main, ["modules"])
    assert result.exit_code == 0
    for name, title in [
        ("M2", "토지 감정평가"),
        ("M3", "공급유형 판단"),
        ("M4", "건축 규모"),
        ("M5", "사업성 분석"),
        ("M6", "LH 종합 판단"),
    ]:
        assert name in result.output and title in result.output
    assert "M2,M4" in result.output and "m5_feasibility.html.j2" in result.output
    starts = {tuple(_columns(line)) for line in result.output.splitlines()}
    assert len(starts) == 1, result.output  # each column starts at one terminal column in every row


def _columns(line: str) -> list[int]:
    """The terminal columns at which a table line's columns start (after a gap of two spaces or more); every
    character of the built-in titles is precomposed, so East Asian Width alone says how wide it is."""
    return [
        sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in line[: gap.end()])
        for gap in re.finditer(r"  +", line)
    ]


def test_strategies_say_which_are_available(cli: CliRunner) -> None:
    output = cli.invoke(main, ["strategies"]).output
    rows = dict(line.split()[:2] for line in output.splitlines()[1:] if line.strip())
    built_in = ("sequential", "thread", "process", "async")
    assert {name: rows.get(name) for name in built_in} == dict.fromkeys(built_in, "yes")
    assert "interpreter" not in rows  # removed (issue 9): no faster than process, and it cannot contain a worker


def test_sample_is_deterministic_json(cli: CliRunner) -> None:
    first = cli.invoke(main, ["sample", "4", "--seed", "7"]).output
    assert first == cli.invoke(main, ["sample", "4", "--seed", "7"]).output
    assert json.loads(first) != json.loads(cli.invoke(main, ["sample", "4", "--seed", "8"]).output)
    assert len(json.loads(first)) == 4


def test_render_writes_one_report_per_module(made: Path) -> None:
    reports = sorted(p.relative_to(made).as_posix() for p in made.glob("*/*.html"))
    assert len(reports) == 15
    assert "p0001-yeoksam/M6.html" in reports


def test_bad_input_exits_2_names_every_field_and_writes_nothing(cli: CliRunner, tmp_path: Path) -> None:
    projects = sample_projects(3)
    projects[1]["land_area_sqm"] = -5
    projects[2]["zone_type"] = "상업지역"
    projects[2]["transactions"][0]["area_sqm"] = 0
    source = tmp_path / "projects.json"
    source.write_text(json.dumps(projects, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out"
    result = cli.invoke(main, ["render", "--projects", str(source), "--out", str(out)])
    assert result.exit_code == 2
    assert "projects[1].land_area_sqm: must be > 0, got -5" in result.output
    assert "projects[2].zone_type: unknown zone" in result.output
    assert "projects[2].transactions[0].area_sqm: must be > 0, got 0" in result.output
    assert "Traceback" not in result.output
    assert not out.exists() or not list(out.rglob("*.html"))

    skipped = cli.invoke(main, ["render", "--projects", str(source), "--out", str(out), "--skip-invalid"])
    assert skipped.exit_code == 0, skipped.output
    assert "skipping" in skipped.output
    assert [p.name for p in out.iterdir() if p.is_dir()] == [projects[0]["id"]]


def test_skip_invalid_skips_a_json_lines_line_that_is_not_json(cli: CliRunner, tmp_path: Path) -> None:
    projects = sample_projects(2)
    source = tmp_path / "projects.jsonl"
    source.write_text(f"{json.dumps(projects[0])}\n{{not json\n{json.dumps(projects[1])}\n", encoding="utf-8")
    out = tmp_path / "out"
    refused = cli.invoke(main, ["render", "--projects", str(source), "--out", str(out)])
    assert refused.exit_code == 2 and "projects.jsonl:2: not valid JSON" in refused.output
    skipped = cli.invoke(main, ["render", "--projects", str(source), "--out", str(out), "--skip-invalid"])
    assert skipped.exit_code == 0, skipped.output
    assert "projects.jsonl:2: not valid JSON" in skipped.output and "2 valid project(s) remain" in skipped.output
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(p["id"] for p in projects)


def test_unknown_module_is_a_usage_error(cli: CliRunner, tmp_path: Path) -> None:
    for module in INJECTIONS:
        result = cli.invoke(main, ["render", "--sample", "1", "--out", str(tmp_path / "o"), "--module", module])
        assert result.exit_code == 2 and "unknown module" in result.output


def test_one_module_and_json_summary(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(
        main,
        ["generate", "--sample", "2", "--module", "M5", "--out", str(tmp_path / "o"), "--json", "--strategy", "thread"],
    )
    summary = json.loads(result.output)
    assert (summary["written"], summary["failed"], summary["strategy"]) == (2, 0, "thread")
    assert sorted(p.name for p in (tmp_path / "o").glob("*/*.html")) == ["M5.html", "M5.html"]


def test_search_and_recent(cli: CliRunner, made: Path) -> None:
    db = str(made / "index.sqlite")
    found = cli.invoke(main, ["search", "역삼", "--db", db])
    assert found.exit_code == 0 and "p0001-yeoksam" in found.output
    only_m3 = cli.invoke(main, ["search", "역삼", "--module", "M3", "--db", db]).output
    assert "M3" in only_m3 and "M2 " not in only_m3
    recent = cli.invoke(main, ["reports", "--recent", "4", "--db", db])
    assert recent.exit_code == 0 and len(recent.output.strip().splitlines()) == 5


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_in_search_is_inert(cli: CliRunner, made: Path, text: str) -> None:
    db = made / "index.sqlite"
    result = cli.invoke(main, ["search", text, "--module", text, "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "p0001" not in result.output
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM reports").fetchone() == (15,)


def test_markup_in_input_is_escaped_in_every_report(cli: CliRunner, tmp_path: Path) -> None:
    project = sample_projects(1)[0]
    attack = '<script>alert("x")</script>'
    for field in ("road_address", "jibun_address", "sido", "sigungu", "dong"):
        project[field] = f"{field}{attack}"
    source = tmp_path / "p.json"
    source.write_text(json.dumps([project], ensure_ascii=False), encoding="utf-8")
    result = cli.invoke(main, ["render", "--projects", str(source), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    for report in (tmp_path / "o").glob("*/*.html"):
        html = report.read_text(encoding="utf-8")
        assert "<script>" not in html, report.name
        assert "&lt;script&gt;" in html, report.name


def test_a_full_disk_stops_with_a_clear_error_and_no_partial_file(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    import zerosite.files

    calls = {"n": 0}
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        calls["n"] += 1
        if calls["n"] > 7:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    monkeypatch.setattr(zerosite.files.os, "replace", replace)
    out = tmp_path / "out"
    result = cli.invoke(main, ["render", "--sample", "3", "--out", str(out)])
    assert result.exit_code == 1
    assert "cannot write report M4 of project p0002-gongdeok" in result.output
    assert "no space left on the device" in result.output
    assert not list(out.rglob("*.tmp"))
    with sqlite3.connect(out / "index.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM reports WHERE status = 'written'").fetchone() == (7,)


def test_an_output_path_that_is_a_file_is_a_clear_error(cli: CliRunner, tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    result = cli.invoke(main, ["render", "--sample", "1", "--out", str(blocker)])
    assert result.exit_code in (1, 2)
    assert "error" in result.output.lower() and str(blocker) in result.output and "Traceback" not in result.output


def test_an_unknown_data_source_is_a_usage_error(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(main, ["generate", "--sample", "1", "--out", str(tmp_path / "o"), "--source", "vworld"])
    assert result.exit_code == 2
    assert "no data source named 'vworld'" in result.output and "embedded, http" in result.output


def test_profile_writes_a_profile_per_strategy(cli: CliRunner, tmp_path: Path) -> None:
    command = ["profile", "--strategy", "sequential", "--scenario", "cpu", "--sample", "3", "--out", str(tmp_path)]
    result = cli.invoke(main, command)
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written in (
        ["sequential-workers=1-scenario=cpu.speedscope.json", "sequential-workers=1-scenario=cpu.svg"],
        ["sequential-workers=1-scenario=cpu.prof"],
    )  # the cProfile fallback where py-spy may not attach
    assert cli.invoke(main, ["profile", "--strategy", "nope", "--out", str(tmp_path)]).exit_code == 2


@pytest.mark.parametrize(
    "spec", ["process:0", "process:abc", "process:-1", "process:", "process:1x", "process:²", ":2"]
)
def test_profile_refuses_a_strategy_spec_it_cannot_run(cli: CliRunner, tmp_path: Path, spec: str) -> None:
    result = cli.invoke(main, ["profile", "--strategy", spec, "--scenario", "cpu", "--out", str(tmp_path / "p")])
    assert result.exit_code == 2
    assert f"Invalid value for '--strategy' / '-s': {spec!r}" in result.output
    assert not (tmp_path / "p").exists()


def test_profile_fails_with_the_profiled_runs_own_error(cli: CliRunner, tmp_path: Path) -> None:
    command = ["profile", "-s", "sequential", "--scenario", "cpu", "--sample", "2", "--out", str(tmp_path / "p")]
    result = cli.invoke(main, command, env={"ZEROSITE_CACHE": "ftp://x"})  # the profiled generate reads it too
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[-2:] == [
        "error: profiling sequential-workers=1-scenario=cpu: the profiled `zerosite generate` failed; its standard "
        "error:",
        "  error: --cache: unknown report cache 'ftp://x': no backend for 'ftp' (known: local, redis, rediss)",
    ]
    assert list((tmp_path / "p").iterdir()) == []


def test_profile_names_files_after_the_workers_used_and_passes_warnings_on(cli: CliRunner, tmp_path: Path) -> None:
    from zerosite.cores import capped_workers

    used, why = capped_workers(999)
    result = cli.invoke(
        main, ["profile", "-s", "thread:999", "--scenario", "cpu", "--sample", "2", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert {p.name.split(".")[0] for p in tmp_path.iterdir()} == {f"thread-workers={used}-scenario=cpu"}
    if why is not None:  # capped by the command, once: the profiled run is given what it may use
        assert result.output.count(f"warning: --workers {why}") == 1, result.output
        assert f"scenario=cpu: warning: --workers {why}" not in result.output


@pytest.mark.parametrize(
    ("out", "why"),
    [("afile/sub", "Not a directory"), ("/proc/zerosite-test", "No such file or directory")],
)
def test_profile_to_a_folder_that_cannot_be_made_is_one_error(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str, why: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file")
    result = cli.invoke(main, ["profile", "-s", "sequential", "--scenario", "cpu", "--out", out])
    assert result.exit_code == 2
    assert result.output == f"error: --out {out}: cannot create it ({why})\n"


def test_profile_latency_is_in_milliseconds(cli: CliRunner) -> None:
    assert "--latency-ms MS" in cli.invoke(main, ["profile", "--help"]).output
    result = cli.invoke(main, ["profile", "--latency-ms", "abc"])
    assert result.exit_code == 2 and "'abc' is not a valid number of milliseconds" in result.output
    assert "not a finite number of milliseconds" in cli.invoke(main, ["profile", "--latency-ms", "nan"]).output


TMUX_WIDTHS = [
    ("토지 감정평가", 13),
    (unicodedata.normalize("NFD", "한강"), 4),  # a syllable's vowel and final draw on its first letter
    ("Cafe\u0301", 4),  # a combining accent
    ("a\u200db\ufeffc\ufe0f", 3),  # zero-width joiner, BOM, variation selector
    ("a\u00adb", 3),  # a soft hyphen shows
    ("a\u0600b", 3),  # so does an Arabic number sign
    ("Ａｱ\u03a9\u00d7", 5),  # fullwidth two; halfwidth katakana and ambiguous characters one
]
"""Text and the columns tmux 3.3a gave it (its cursor after printing the text, LANG=C.UTF-8)."""


@pytest.mark.parametrize(("text", "columns"), TMUX_WIDTHS)
def test_table_widths_are_a_terminals(text: str, columns: int) -> None:
    assert _width(text) == columns


def test_tables_pad_decomposed_hangul_and_combining_marks_as_a_terminal_shows_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An address from a file macOS named is NFD Hangul: padded by code points' East Asian Width alone, every
    vowel and final counted as a column, and the columns after it stood short of the others."""
    nfd = unicodedata.normalize("NFD", "한강")
    _table(("address", "path"), [("한강", "a"), (nfd, "b"), ("Cafe\u0301", "c"), ("x\u200dy", "d")])
    assert capsys.readouterr().out.splitlines() == [
        "address  path",
        "한강     a",
        f"{nfd}     b",
        "Cafe\u0301     c",
        "x\u200dy       d",
    ]


@pytest.mark.parametrize(
    "strategy", [["sequential"], ["process"], ["process", "--start-method", "spawn"], ["auto"]], ids=" ".join
)
def test_what_plugin_code_prints_leaves_the_json_summary_alone(tmp_path: Path, strategy: list[str]) -> None:
    """A plugin's ``print`` went to standard output, before the ``--json`` summary, which no longer parsed: it goes to
    standard error, from this process and from the pool's workers (forked, or new interpreters)."""
    import shutil
    import subprocess
    import sys

    plugins = tmp_path / "plugins"
    shutil.copytree(Path(__file__).parent / "data" / "printing_plugin", plugins)
    done = subprocess.run(
        [sys.executable, "-m", "zerosite", "--plugins-dir", str(plugins), "generate", "--sample", "3", "--module", "M9",
         "--strategy", *strategy, "--out", str(tmp_path / "out"), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["written"] == 3
    assert done.stderr.count("debug: computing") == 3
    # as it was imported and its hooks ran (user audit: these went to standard output, before the summary)
    assert all(f"debug: {what}" in done.stderr for what in ("imported", "registering", "preparing the environment"))
    listed = subprocess.run(
        [sys.executable, "-m", "zerosite", "--plugins-dir", str(plugins), "modules"], capture_output=True, text=True
    )
    assert listed.stdout.startswith("module ") and "debug" not in listed.stdout


@pytest.mark.parametrize("as_json", [False, True], ids=["line", "json"])
def test_a_reader_gone_from_standard_output_does_not_fail_the_batch(tmp_path: Path, as_json: bool) -> None:
    """Batch audit: ``generate ... | true`` exited 1, silently (click's handling of a closed pipe), after every report
    was written and indexed; exit 1 says some reports failed."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "zerosite", "generate", "--sample", "3", "--out", str(tmp_path / "out"), "-q"]
    child = subprocess.Popen(
        [*command, *(["--json"] if as_json else [])], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # the reader is gone before the summary comes
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=120) == 0, stderr
    assert "Traceback" not in stderr and "Broken pipe" not in stderr
    assert len(list((tmp_path / "out").glob("*/*.html"))) == 15
