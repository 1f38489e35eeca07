"""``medrefine serve`` refuses bad flags with one line and exit code 2, before binding."""

from __future__ import annotations

from pathlib import Path

import pytest

from medrefine.cli import main


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--tls-cert", "{pem}"], "tls_cert and tls_key go together"),
        (["--client-ca", "{pem}"], "client_ca"),
        (["--token-file", "{missing}"], "cannot read"),
        (["--port", "70000"], "--port must be in 0..65535"),
        (["--max-sessions", "0"], "max_sessions must be at least 1"),
    ],
)
def test_bad_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], words: str
) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("not a certificate")
    args = [f.format(pem=pem, missing=tmp_path / "nope") for f in flags]
    assert main(["serve", "--port", "0", *args]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
