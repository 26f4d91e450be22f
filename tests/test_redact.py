"""Secrets never written: argv values that look like secrets, keys echoed in any case."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from carbontrack import track
from carbontrack._redact import MASK, is_secret_name, redact_argv, redact_data, redact_text
from carbontrack.testing import FakeDevice, FakeHardware


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--hf-token=hf_SECRET"], ["--hf-token=***"]),
        (["--token", "hf_SECRET"], ["--token", "***"]),
        (["--api-key", "abc", "--epochs", "3"], ["--api-key", "***", "--epochs", "3"]),
        (["--DB_PASSWORD=pw"], ["--DB_PASSWORD=***"]),
        (["--client-secret", "s"], ["--client-secret", "***"]),
        (["HF_TOKEN=hf_x", "API_KEY=k", "lr=0.1"], ["HF_TOKEN=***", "API_KEY=***", "lr=0.1"]),
        (["trainer.wandb.api_key=abc"], ["trainer.wandb.api_key=***"]),
        # The next word is an option, not the token's value: kept.
        (["--token", "--verbose"], ["--token", "--verbose"]),
        # Token shapes anywhere, even positional.
        (["login", "hf_abcdefghijKLMNOP"], ["login", "***"]),
        (["--url", "https://user:pa55@host/x"], ["--url", "https://user:***@host/x"]),
        (
            ["--url", "https://api.example/v1?zone=DK&API_KEY=abc123&x=1"],
            ["--url", "https://api.example/v1?zone=DK&API_KEY=***&x=1"],
        ),
        (["python", "train.py", "--epochs", "3"], ["python", "train.py", "--epochs", "3"]),
    ],
)
def test_argv_values_that_look_like_secrets_are_masked(
    argv: list[str], expected: list[str]
) -> None:
    assert redact_argv(argv) == expected


def test_secret_names_are_matched_case_insensitively() -> None:
    assert is_secret_name("--HF-Token")
    assert is_secret_name("OPENAI_API_KEY")
    assert not is_secret_name("--epochs")


def test_text_redaction_is_case_insensitive() -> None:
    text = "Invalid auth-token AbCdEf123 (you sent abcdef123, ABCDEF123)"
    out = redact_text(text, ["AbCdEf123"])
    assert "abcdef123" not in out.lower()
    assert out.count(MASK) == 3


def test_data_redaction_reaches_every_string_and_key() -> None:
    data = {"zone": "DK", "echo": ["KEY-1", {"KEY-1": "key-1 here"}], "n": 3.5}
    out = redact_data(data, ["key-1"])
    assert "key-1" not in json.dumps(out).lower()
    assert out["n"] == 3.5
    assert out["zone"] == "DK"


def test_the_run_log_holds_no_secret_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reproduces issue 21: `--hf-token=hf_SECRET` passed on the command line was written to the
    # run log's header verbatim.
    monkeypatch.setattr(
        sys, "argv", ["train.py", "--hf-token=hf_SECRET", "--token", "hf_OTHER", "--epochs", "1"]
    )
    hw = FakeHardware([FakeDevice("package-0", kind="cpu", watts=10.0)])
    with track(plugins=[hw], log_dir=tmp_path, verbose=0, interval_s=0.01):
        pass
    [log] = tmp_path.glob("*.jsonl")
    text = log.read_text()
    assert "hf_SECRET" not in text
    assert "hf_OTHER" not in text
    header = json.loads(text.splitlines()[0])
    assert header["argv"] == ["train.py", "--hf-token=***", "--token", "***", "--epochs", "1"]
