"""The command line probed as a hostile user would (issue 17): every invocation below
ends with a one-line diagnostic and diff(1)'s status 2 (or 0 where it is fine), never a
traceback. Run in this process, so that any exception escaping ``main`` fails the test.

The expected status is written next to each case; the messages are checked for the
words that say what is wrong, not for their exact wording.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from livehelpers import REPO

from qmirror.cli import main


PC = str(REPO / "fixtures/qemu-7.2/x86_64/pc")
TREE = f"{PC}/info-mtree-o-D.txt"
FLAT = f"{PC}/info-mtree-f-o.txt"

#: (command line, expected status, words expected in stderr). ``{d}`` is a scratch
#: directory holding: ``empty/``, ``junk.txt``, ``bin.txt`` (not UTF-8) and ``theirs/``
#: (someone's directory with a meta.json and a file of theirs).
CASES: list[tuple[str, int, str]] = [
    ("check --tree /nonexistent --flat /nonexistent", 2, "No such file"),
    ("check --tree {d}/empty --flat {d}/empty", 2, "Is a directory"),
    ("check --tree {d}/junk.txt --flat {d}/junk.txt", 2, "junk.txt"),
    ("check --tree {d}/bin.txt --flat {d}/bin.txt", 2, "not UTF-8"),
    (f"check --tree {FLAT} --flat {TREE}", 2, "info-mtree"),
    ("check /no/such/sock", 2, "no such file or directory"),
    ("check {d}/empty", 2, "without meta.json"),
    ("check {d}/junk.txt", 2, "neither a socket nor a snapshot"),
    ("check tcp:[::1]:99999", 2, "out of range"),
    ("check --socket /dev/null", 2, "cannot connect"),
    ("check --targets-file /nonexistent", 2, "cannot read"),
    ("check --targets-file {d}/empty", 2, "cannot read"),
    ("check --targets-file {d}/bin.txt", 2, "not UTF-8"),
    ("check --launch", 2, "needs QEMU arguments after '--'"),
    ("check -- -machine pc", 2, "only taken with --launch"),
    ("check --boot 3 --socket /x", 2, "--boot only applies"),
    ("check --boot -1 --launch -- -machine pc", 2, "finite and >= 0"),
    ("check --timeout nan --socket /x", 2, "finite and >= 0"),
    ("check --launch -- /nonexistent/qemu", 2, "cannot run /nonexistent/qemu"),
    (
        f"check --junit-xml /nonexistent/dir/x.xml --tree {TREE} --flat {FLAT}",
        2,
        "no such directory",
    ),
    ("check --junit-xml {d}/empty --socket /x", 2, "is a directory"),
    ("check --junit-xml /proc/version --socket /nonexistent", 2, "cannot write /proc/version"),
    ("check --format json --socket /nonexistent", 2, "cannot connect"),
    (f"snapshot --out {{d}}/theirs --force {PC}", 2, "not replaced"),
    (f"snapshot --out {{d}}/junk.txt {PC}", 2, "not a directory"),
    (f"snapshot --out /proc/nowhere {PC}", 2, "cannot write"),
    (f"snapshot --out {{d}} {PC}", 2, "not empty"),
    (f"watch {PC}", 2, "not a live VM"),
    ("watch /nonexistent", 2, "no such file or directory"),
    ("watch --count 0 --socket /x", 2, "at least 1"),
    ("tree /nonexistent", 2, "no such file or directory"),
    ("tree {d}/empty", 2, "without a tree text"),
    ("tree {d}/bin.txt", 2, "not UTF-8"),
    (f"tree {PC} --depth -3", 2, "0 or more"),
    (f"map {PC}", 2, "--html"),
    (f"map {PC} --html /nonexistent/dir/x.html", 2, "/nonexistent/dir"),
    (f"map {PC} --svg {{d}}/empty", 2, "empty"),
    (f"map {PC} {PC} {PC} --svg {{d}}/x.svg", 2, "got 3"),
    ("ram-map /nonexistent", 2, "no such file or directory"),
    (f"diff {PC} /nonexistent", 2, "no such file or directory"),
    (f"diff {PC} {PC} --ignore-region [", 2, "unterminated character set"),
    ("slots /nonexistent", 2, "no such file or directory"),
    ("slots --tree {d}/junk.txt", 2, "junk.txt"),
    (f"slots {PC} --max-slot-size 3", 2, "multiple of the page size"),
    ("render --tree {d}/junk.txt", 2, "junk.txt"),
    ("format --tree {d}/bin.txt", 2, "not UTF-8"),
    ("--config /nonexistent config", 2, "does not exist"),
    ("--config /dev/null config", 0, ""),
    ("--config {d}/empty config", 2, "is a directory"),
    ("--config {d}/bin.txt config", 2, "not UTF-8"),
    ("--config {d}/junk.txt config", 2, "not valid TOML"),
    ("--color purple check", 2, "invalid choice"),
    ("nosuchcommand", 2, "invalid choice"),
    ("", 2, "required"),
]


@pytest.fixture
def scratch(short_tmp: Path) -> Path:
    (short_tmp / "empty").mkdir()
    (short_tmp / "junk.txt").write_text("junk\n")
    (short_tmp / "bin.txt").write_bytes(b"\xff\xfe")
    (short_tmp / "theirs").mkdir()
    (short_tmp / "theirs" / "meta.json").write_text("{}")
    (short_tmp / "theirs" / "keep.txt").write_text("mine")
    return short_tmp


@pytest.mark.parametrize(("line", "code", "words"), CASES, ids=[c[0][:60] for c in CASES])
def test_hostile_invocation(
    line: str,
    code: int,
    words: str,
    scratch: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("QMIRROR_CONFIG", raising=False)
    monkeypatch.chdir(scratch)
    argv = ["--color", "never", *line.replace("{d}", str(scratch)).split()]
    try:
        got = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        got = exc.code if isinstance(exc.code, int) else 2
    err = capsys.readouterr().err
    assert got == code, err
    assert words in err, err
    assert "Traceback" not in err
    # Nothing of someone else's was touched.
    assert (scratch / "theirs" / "keep.txt").read_text() == "mine"
    assert sorted(os.listdir(scratch)) == ["bin.txt", "empty", "junk.txt", "theirs"]
