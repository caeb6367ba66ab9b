"""The command line as a hostile user meets it (issue 17, defects 3 to 5): JUnit paths that
cannot be written, options around ``--launch --``, the README's own command lines, and
the ``qemu`` setting honoured by every command that launches."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
from pathlib import Path

import pytest
from livehelpers import REPO, run_qmirror

from qmirror.cli import EXAMPLES, build_parser, main


FIXTURE = REPO / "fixtures/qemu-7.2/x86_64/pc"
OFFLINE = [
    "check",
    "--tree",
    str(FIXTURE / "info-mtree-o-D.txt"),
    "--flat",
    str(FIXTURE / "info-mtree-f-o.txt"),
]


# -- defect 3: --junit-xml --------------------------------------------------------------


@pytest.mark.parametrize("where", ["missing-dir/report.xml", "."])
def test_unwritable_junit_path_is_trouble(
    where: str, short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = short_tmp / where
    assert main(["--color", "never", *OFFLINE, "--junit-xml", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before the check ran
    (line,) = captured.err.splitlines()
    assert line.startswith("qmirror check: --junit-xml ") and (
        "no such directory" in line or "is a directory" in line
    )


def test_junit_trouble_never_masks_a_connection_error(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = str(short_tmp / "no-vm.qmp")
    # The report can be written: it records the error, and the status is 2.
    report = short_tmp / "report.xml"
    assert main(["--color", "never", "check", "--socket", gone, "--junit-xml", str(report)]) == 2
    xml = report.read_text()
    assert 'errors="1"' in xml and "cannot connect" in xml
    capsys.readouterr()
    # It cannot: still 2 (trouble), never 1 (which a CI reads as "mismatch").
    assert (
        main(
            [
                "--color",
                "never",
                "check",
                "--socket",
                gone,
                "--junit-xml",
                str(short_tmp / "nowhere" / "r.xml"),
            ]
        )
        == 2
    )
    assert "Traceback" not in capsys.readouterr().err


# -- defect 4: options before `--`, and the README ---------------------------------------


def _qmirror_options() -> set[str]:
    """Every option string of every qmirror command."""
    parser = build_parser()
    found = {s for a in parser._actions for s in a.option_strings}
    for action in parser._actions:
        for sub in getattr(action, "choices", None) or {}:
            if isinstance(action.choices, dict):
                found |= {s for a in action.choices[sub]._actions for s in a.option_strings}
    return found


def _synopsis() -> list[str]:
    """The README's synopsis entries (continuation lines joined)."""
    text = README.split("## Command line", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    entries: list[str] = []
    for line in text.splitlines():
        if line.startswith("qmirror "):
            entries.append(line)
        else:
            entries[-1] += " " + line.strip()
    return entries


README = (REPO / "README.md").read_text()


def test_synopsis_puts_every_qmirror_option_before_the_double_dash() -> None:
    entries = [e for e in _synopsis() if " -- " in e]
    assert {e.split()[1] for e in entries} == {"check", "snapshot", "watch"}
    options = _qmirror_options()
    for entry in entries:
        after = entry.split(" -- ", 1)[1].replace("[", " ").replace("]", " ").split()
        assert after[:2] == ["QEMU-BINARY", "QEMU-ARGS..."], entry
        assert not set(after) & options, entry
    boot = [e for e in _synopsis() if "--boot" in e]
    assert boot and all(e.index("--boot") < e.index(" -- ") for e in boot)


def _readme_commands() -> list[list[str]]:
    """Runnable qmirror command lines of the README's examples: `$ qmirror ...` lines
    and bare `qmirror ...` lines in shell blocks (continuations joined; synopses, with
    their [optional] parts and CAPITAL placeholders, are not commands)."""
    out = []
    for block in re.findall(r"```(?:sh|text)\n(.*?)```", README, flags=re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = line.removeprefix("$ ").split("&& ")[-1].strip()
            if not line.startswith("qmirror ") or re.search(r"\[|\||\b[A-Z]{3,}\b", line):
                continue
            out.append(shlex.split(line, comments=True)[1:])
    return out


def test_readme_examples_found() -> None:
    words = [" ".join(c) for c in _readme_commands()]
    assert any(w.startswith("check --launch --") for w in words)
    assert any(w.startswith("check --tree fixtures/") for w in words)
    assert sum(w.startswith("snapshot --out") for w in words) == 2
    assert sum("--boot" in w for w in words) >= 2


async def test_readme_check_snapshot_and_boot_lines_run(short_tmp: Path, qemu_binary: str) -> None:
    """Every README example of check, snapshot or --boot runs as written (run from a
    scratch directory; the repository's fixtures stand where the README says)."""
    (short_tmp / "fixtures").symlink_to(REPO / "fixtures")
    ran = 0
    for words in _readme_commands():
        if words[0] not in ("check", "snapshot") and "--boot" not in words:
            continue
        if "q35-tree-edited.txt" in words:  # an illustration of a mismatch's output
            continue
        words = [qemu_binary if w == "qemu-system-x86_64" else w for w in words]
        run = await run_qmirror(*words, cwd=short_tmp)
        assert run.code == 0, (words, run.err)
        assert "Invalid boot device" not in run.err
        ran += 1
    assert ran >= 5
    assert (short_tmp / "after" / "meta.json").is_file()


# -- defect 5: the `qemu` setting --------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["check"],
        ["snapshot", "--out", "snap"],
        ["tree"],
        ["watch", "--count", "1"],
        ["ram-map"],
        ["map", "--svg", "m.svg"],
    ],
)
def test_qemu_setting_is_honoured_by_every_launch(
    command: list[str],
    short_tmp: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A binary that cannot exist, chosen in the project's pyproject.toml: every command
    that launches must try exactly it (and say so), not the default QEMU."""
    monkeypatch.delenv("QMIRROR_QEMU", raising=False)
    monkeypatch.delenv("QMIRROR_CONFIG", raising=False)
    project = short_tmp / "project"
    (project / "sub").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[tool.qmirror]\nqemu = "/nonexistent/qemu-from-pyproject"\n'
    )
    monkeypatch.chdir(project / "sub")  # found walking up, as `qmirror config` finds it
    assert main(["--color", "never", *command, "--launch", "--", "-machine", "pc"]) == 2
    err = capsys.readouterr().err
    assert "cannot run /nonexistent/qemu-from-pyproject" in err, err


async def test_qemu_setting_runs_that_qemu(short_tmp: Path, qemu_binary: str) -> None:
    """The same with a real QEMU under a name of its own: check runs it and matches."""
    real = shutil.which(qemu_binary)
    assert real is not None
    mine = short_tmp / "project-qemu"
    mine.symlink_to(real)
    (short_tmp / "pyproject.toml").write_text(f'[tool.qmirror]\nqemu = "{mine}"\n')
    run = await run_qmirror(
        "check",
        "--launch",
        "--",
        "-machine",
        "pc",
        "-nic",
        "none",
        cwd=short_tmp,
        unset=("QMIRROR_QEMU", "QMIRROR_CONFIG"),
    )
    assert run.code == 0, run.err
    assert f"MATCH launch:{mine} -machine pc" in run.out


def test_config_dev_null_is_empty(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--color", "never", "--config", "/dev/null", "config"]) == 0
    assert "does not exist" not in capsys.readouterr().err


def test_config_that_is_not_text_is_trouble(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = short_tmp / "settings.toml"
    binary.write_bytes(b"\xff\xfe\x00qemu")
    assert main(["--color", "never", "--config", str(binary), "config"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith("not valid TOML: not UTF-8 text (byte 0)"), line
    assert main(["--color", "never", "--config", str(short_tmp), "config"]) == 2
    assert "is a directory" in capsys.readouterr().err


# -- usability (defect 6) -----------------------------------------------------------------


def test_a_match_is_one_line_unless_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--color", "never", *OFFLINE]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("MATCH: 4 FlatViews, ") and "attributes from rules" in line
    assert main(["--color", "never", *OFFLINE, "-v"]) == 0
    out = capsys.readouterr().out
    assert "Not read from the tree" in out and "rule " in out and len(out.splitlines()) > 10
    # Live targets (a snapshot directory here): one verdict line per VM.
    assert main(["--color", "never", "check", str(FIXTURE), str(FIXTURE)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[2] == "2 targets: 2 match, 0 mismatch, 0 error"
    assert all(ln.startswith(f"MATCH {FIXTURE} (QEMU 7.2") for ln in lines[:2])


def _command_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise AssertionError("no subcommands")


def test_help_has_examples_that_parse() -> None:
    parser = build_parser()
    for name, lines in EXAMPLES.items():
        helper = parser if name is None else _command_parser(parser, name)
        text = helper.format_help()
        assert "examples:\n" in text
        for line in lines:
            assert f"  {line}\n" in text
            words = shlex.split(line)[1:]
            before = words[: words.index("--")] if "--" in words else words
            parser.parse_args(before)  # exits (SystemExit) on a bad example


def test_a_missing_target_is_no_such_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--color", "never", "check", "/no/such/vm.qmp"]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_slots_of_a_tcg_vm_say_they_are_a_prediction(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--color", "never", "slots", str(FIXTURE)]) == 0
    out = capsys.readouterr().out
    assert "runs with tcg, not KVM: this is the table QEMU would give KVM" in out


async def test_watch_summarises_the_first_reading(qemu_binary: str) -> None:
    run = await run_qmirror(
        "watch",
        "--count",
        "2",
        "--interval",
        "0.3",
        "--launch",
        "--",
        qemu_binary,
        "-machine",
        "pc",
        "-nic",
        "none",
        timeout=60,
    )
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    # The first reading's records end where the next reading (or, if the map had not
    # changed yet, which prints nothing, the end) begins.
    second = next((n for n, ln in enumerate(lines) if " reading 2 " in ln or " end (" in ln), None)
    assert second is not None, run.out + run.err
    first = lines[:second]
    assert not any(re.search(r"^\S+   [+-] ", ln) for ln in first), first
    (summary,) = [ln for ln in first if "the map:" in ln]
    found = re.search(r"the map: (\d+) ranges in 4 address spaces \((.*)\)", summary)
    assert found, summary
    per_space = dict(part.rsplit(" ", 1) for part in found.group(2).split(", "))
    assert sum(int(n) for n in per_space.values()) == int(found.group(1))
    assert {"memory", "I/O"} <= set(per_space)
