"""CI cannot go green by skipping: under QMIRROR_REQUIRE_LIVE=1 a live skip is a failure."""

from __future__ import annotations

import pytest
from livehelpers import REQUIRE_LIVE, skip_live


def test_a_missing_tool_skips_a_live_test_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_LIVE, raising=False)
    with pytest.raises(pytest.skip.Exception, match="qemu-system-foo not found"):
        skip_live("qemu-system-foo not found")


@pytest.mark.parametrize("value", ["1", "yes"])
def test_under_require_live_a_missing_tool_fails_the_test(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(REQUIRE_LIVE, value)
    with pytest.raises(pytest.fail.Exception, match=r"chromium not found \(QMIRROR_REQUIRE_LIVE"):
        skip_live("chromium not found")


def test_require_live_0_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_LIVE, "0")
    with pytest.raises(pytest.skip.Exception):
        skip_live("qemu-system-foo not found")
