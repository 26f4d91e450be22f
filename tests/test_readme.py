"""The README's set-up commands work, and CI runs exactly them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"


def setup_commands() -> list[str]:
    """The shell commands of the README's set-up section, in order."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Set-up")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    return [c.strip() for c in re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)]


def test_the_readme_has_its_two_setup_commands() -> None:
    commands = setup_commands()
    assert len(commands) == 2, commands
    try_it, test = commands
    assert "carbontrack run -- python examples/train.py" in try_it
    assert "pytest" in test


def test_ci_runs_the_readme_setup_commands_verbatim() -> None:
    # .ci/run starts from a fresh machine, so this is the "works on a fresh machine" check.
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    for command in setup_commands():
        assert command in ci, f".ci/run does not run the README's set-up command {command!r}"


def test_the_example_training_runs_under_carbontrack(tmp_path: Path) -> None:
    # The first set-up command after its `pip install .` (the installed package is this one).
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONTRACK_")}
    env["CARBONTRACK_HOME"] = str(tmp_path)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    command = setup_commands()[0].split("&&", 1)[1].split()
    assert command[:2] == ["carbontrack", "run"]
    proc = subprocess.run(
        [sys.executable, "-m", "carbontrack", *command[1:]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "carbontrack: actual" in proc.stderr  # the summary
    (log,) = (tmp_path / "logs").glob("*.jsonl")
    last = json.loads(log.read_text(encoding="utf-8").splitlines()[-1])
    assert last["type"] == "report"
    assert last["report"]["energy_j"] > 0


def test_the_readme_is_a_front_door_of_at_most_200_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, (
        f"README.md has {len(lines)} lines: it is the front door (at most 200); put the detail "
        "in a page of docs/ and link it"
    )


def test_the_readme_links_resolve() -> None:
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\((?!https?://|mailto:|#)([^)#\s]+)", text)
    assert targets, "the README links into the documentation"
    missing = [t for t in targets if not (REPO / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_the_readme_links_every_guide() -> None:
    text = README.read_text(encoding="utf-8")
    for page in ("getting-started", "measuring", "permissions", "reports", "reference/api"):
        assert f"docs/{page}.md" in text, f"README.md does not link docs/{page}.md"
