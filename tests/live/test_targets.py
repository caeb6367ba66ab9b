"""TARGET strings, target options and the command line around them (no QEMU needed)."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from qmirror.cli import build_parser, main
from qmirror.errors import QmirrorError
from qmirror.live.targets import (
    Target,
    is_loopback,
    parse_target,
    read_targets_file,
    targets_from_args,
)


FIXTURE = Path(__file__).resolve().parents[2] / "fixtures/qemu-7.2/x86_64/pc"


def host() -> str:
    """A fresh non-loopback host name: each host is warned about only once."""
    return f"vm-{uuid.uuid4().hex[:8]}.example"


@pytest.mark.parametrize(
    ("spec", "kind", "where"),
    [
        ("unix:/run/vm.qmp", "unix", "/run/vm.qmp"),
        ("unix:relative.sock", "unix", "relative.sock"),
        ("tcp:127.0.0.1:4444", "tcp", ("127.0.0.1", 4444)),
        ("localhost:4444", "tcp", ("localhost", 4444)),
        ("tcp:[::1]:5555", "tcp", ("::1", 5555)),
        ("[::1]:5555", "tcp", ("::1", 5555)),
    ],
)
def test_parse_target(spec: str, kind: str, where: object) -> None:
    warnings: list[str] = []
    t = parse_target(spec, warn=warnings.append)
    assert t.kind == kind and t.label == spec and t.address == where
    assert warnings == []


def test_existing_socket_and_snapshot_directory(short_tmp: Path) -> None:
    path = short_tmp / "mon.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        t = parse_target(str(path))
    assert t.kind == "unix" and t.address == str(path)
    snap = parse_target(str(FIXTURE))
    assert snap.kind == "snapshot" and snap.path == str(FIXTURE) and not snap.live
    with pytest.raises(QmirrorError, match="a snapshot target has no monitor address"):
        _ = Target.snapshot(str(FIXTURE)).address


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "TARGET is empty"),
        ("unix:", "no socket path"),
        ("tcp:nohost", "expected HOST:PORT"),
        ("tcp:host:99999", "port 99999 is out of range"),
        ("/no/such/thing", "no such file or directory"),
    ],
)
def test_bad_targets(spec: str, message: str) -> None:
    with pytest.raises(QmirrorError, match=message):
        parse_target(spec)


def test_directory_and_file_that_are_not_targets(short_tmp: Path) -> None:
    with pytest.raises(QmirrorError, match=r"without meta\.json"):
        parse_target(str(short_tmp))
    (short_tmp / "f").write_text("x")
    with pytest.raises(QmirrorError, match="neither a socket nor a snapshot"):
        parse_target(str(short_tmp / "f"))


def test_non_loopback_tcp_warns_once_per_host() -> None:
    warnings: list[str] = []
    name = host()
    parse_target(f"tcp:{name}:4444", warn=warnings.append)
    parse_target(f"{name}:4445", warn=warnings.append)
    assert len(warnings) == 1
    assert "not a loopback address" in warnings[0] and "no authentication" in warnings[0]
    assert all(
        is_loopback(h)
        for h in (
            "localhost",
            "127.0.0.2",
            "::1",
            "a.localhost",
            "127.1",
            "127.0.1",
            "0x7f.1",
            "2130706433",
            "::ffff:127.0.0.1",
            "LOCALHOST.",
        )
    )
    assert not any(
        is_loopback(h)
        for h in ("10.0.0.1", "example.com", "::2", "128.1", "::ffff:10.0.0.1", "127.example.com")
    )


def test_targets_file(short_tmp: Path) -> None:
    f = short_tmp / "targets"
    f.write_text(f"# my VMs\n\nunix:/run/a.qmp\n   tcp:127.0.0.1:4444  \n{FIXTURE}\n")
    assert [t.kind for t in read_targets_file(str(f))] == ["unix", "tcp", "snapshot"]
    f.write_text("unix:/run/a.qmp\n# fine\nwhat is this\n")
    with pytest.raises(QmirrorError, match=rf"{f}:3: TARGET 'what is this'"):
        read_targets_file(str(f))


def parse(*words: str, passthrough: list[str] | None = None) -> list[Target]:
    args = build_parser().parse_args(list(words))
    args.passthrough = passthrough
    return targets_from_args(args, positional=getattr(args, "targets", []))


def test_targets_from_args_order_and_launch() -> None:
    got = parse(
        "check",
        "unix:/a",
        "--tcp",
        "127.0.0.1:1",
        "--socket",
        "/b",
        "--launch",
        passthrough=["qemu-system-x86_64", "-machine", "q35"],
    )
    assert [t.kind for t in got] == ["unix", "unix", "tcp", "launch"]
    assert got[-1].binary == "qemu-system-x86_64" and got[-1].args == ("-machine", "q35")
    (only,) = parse("check", "--qemu", "/opt/qemu", "--launch", passthrough=["-machine", "pc"])
    assert only.binary == "/opt/qemu" and only.args == ("-machine", "pc")
    # qmirror's options go anywhere before `--`; after it, every word is QEMU's.
    (late,) = parse("check", "--launch", "--boot", "3", passthrough=["-boot", "menu=on"])
    assert late.args == ("-boot", "menu=on")


def test_command_line_mistakes_are_trouble(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--boot", "3", "--socket", "/x"]) == 2
    assert "--boot only applies to a VM started with --launch" in capsys.readouterr().err
    assert main(["check", "--", "-machine", "q35"]) == 2
    assert "only taken with --launch" in capsys.readouterr().err
    assert main(["check", "--launch"]) == 2
    assert "--launch needs QEMU arguments" in capsys.readouterr().err
    assert main(["check", "--socket", "/x", "--tree", str(FIXTURE / "info-mtree.txt")]) == 2
    assert "either --tree/--flat or live targets" in capsys.readouterr().err
    assert main(["watch", str(FIXTURE)]) == 2
    assert "not a live VM" in capsys.readouterr().err
    assert main(["snapshot", "--out", "/tmp/x", "--socket", "/a", "--socket", "/b"]) == 2
    assert "exactly one target" in capsys.readouterr().err


def test_offline_check_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "--color",
            "never",
            "check",
            "--tree",
            str(FIXTURE / "info-mtree-o-D.txt"),
            "--flat",
            str(FIXTURE / "info-mtree-f-o.txt"),
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.startswith("MATCH: ")
    assert main(["check"]) == 2
    assert "give --tree TREE.txt and --flat FLAT.txt, or a live target" in capsys.readouterr().err
