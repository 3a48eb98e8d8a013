"""`pitstop rules diff` refuses bad arguments clearly, before it reads anything from the broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import DEFAULT_RULES
from pitstop.cli import main


def test_a_new_pack_that_does_not_validate_is_refused_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT_RULES.read_text(encoding="utf-8").replace('when: "score >= 9"', 'when: "scor >= 9"'))
    assert main(["rules", "diff", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:" in err and "unknown fact 'scor' for this event type (did you mean score?)" in err


def test_an_unknown_centre_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "diff", str(DEFAULT_RULES), "--centre", "C99"]) == 2
    assert "no centre 'C99'" in capsys.readouterr().err


@pytest.mark.parametrize("season", ["2026-13", "26-11", "2026/11"])
def test_a_bad_season_is_refused(season: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["rules", "diff", str(DEFAULT_RULES), "--season", season])
    assert info.value.code == 2
    assert f"'{season}' is not a season: write YYYY-MM" in capsys.readouterr().err
