"""`pitstop bench` refuses bad arguments with a clear error, before starting anything."""

from __future__ import annotations

import pytest

from pitstop.cli import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--events", "0"], "0 is not between 1 and 10,000,000"),
        (["--kiosks", "60000"], "60000 kiosks: between 0 and 50,000"),
        (["--step-s", "0.5"], "0.5 s is not between 1 and 3600"),
        (["--rates", "0"], "0 is not between 1 and 10,000,000"),
        (["--peers", "spark"], "invalid choice: 'spark'"),
        (["--workers", "5"], "5 workers: between 1 and 4"),
        (["--workers", "two"], "invalid _workers value: 'two'"),
    ],
)
def test_bad_arguments_are_refused(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_an_engine_checkout_that_is_not_one_is_refused(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--engine-from", str(tmp_path)]) == 2
    assert "is not a Pitstop checkout" in capsys.readouterr().err
