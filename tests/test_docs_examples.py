"""Every code example in the docs runs: the docs cannot rot.

Fenced ``python`` blocks of every page in docs/ (and the README) run in order, one page per
fresh interpreter, the blocks of a page sharing one namespace (like a reader pasting them into
one session), in a temporary directory with its own ``CARBONTRACK_HOME``. ``train()`` and
``train_one_epoch()`` stand for the reader's own code (a few microseconds of arithmetic). No
hardware is needed: ``track()`` measures what the machine offers, which on a CI machine is the
CPU estimate, or the fakes of ``carbontrack.testing`` where a page uses them.

Shell blocks (``sh``, ``bash``, ``shell``; in ``console`` blocks and unlabelled blocks showing
a ``$ `` prompt, the lines after the prompt): every line that runs ``carbontrack``
is parsed by carbontrack's own argument parser (an option that no longer exists fails), and
then run in a subprocess: ``run`` with its command replaced by ``true``, the other commands as
written, except those that would go to the network (``--provider``, ``--geolocate``).

Markers, an HTML comment on the line right before a block (the rendered page hides it):

- ``<!-- docs-test: skip REASON -->``: not run (a reason is required; keep these rare).
- ``<!-- docs-test: needs MODULE[,MODULE] -->``: run only where the modules import (CI installs
  every framework, so there they run).
- ``<!-- real: PATH -->`` / ``<!-- excerpt: PATH -->``: a copy of a repository file (or of a
  contiguous part of it), checked here to match the file; the file itself is tested and run by
  its own tests, so the copy is not run again.

And anywhere on a page, hidden set-up code run at that point in the page's namespace::

    <!-- docs-test: setup
    args = argparse.Namespace(num_epochs=2)
    -->
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from carbontrack.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
PAGES = sorted(
    [p for p in (REPO / "docs").rglob("*.md") if "_build" not in p.parts] + [REPO / "README.md"]
)

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
_MARKER = re.compile(r"^<!-- (?P<kind>docs-test: \w+|real:|excerpt:)\s*(?P<arg>.*?)\s*-->$")
_SETUP = re.compile(r"^<!-- docs-test: setup\n(?P<code>.*?)^-->$", re.DOTALL | re.MULTILINE)
PYTHON = {"python", "py", "python3", "pycon"}
SHELL = {"sh", "bash", "shell", "console"}

PRELUDE = """\
def train(*args, **kwargs):
    return sum(i * i for i in range(1000))

def train_one_epoch(*args, **kwargs):
    return sum(i * i for i in range(1000))
"""


@attrs.frozen
class Block:
    page: Path
    line: int  # of the block's first code line, 1-based
    lang: str
    code: str
    marker: str = ""  # "skip", "needs", "real", "excerpt", "setup" or ""
    arg: str = ""

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The page's fenced blocks and hidden set-up code, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    setups = {
        page.read_text(encoding="utf-8")[: m.start()].count("\n") + 2: m.group("code")
        for m in _SETUP.finditer(page.read_text(encoding="utf-8"))
    }
    i = 0
    while i < len(lines):
        if i + 1 in setups:
            found.append(Block(page, i + 2, "python", setups[i + 1], "setup"))
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group("fence"), m.group("info").strip()
        lang = info.split()[0].lower() if info else ""
        end = i + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        prev = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = _MARKER.match(prev.strip())
        kind = arg = ""
        if marker:
            kind = marker.group("kind").removeprefix("docs-test: ").rstrip(":")
            arg = marker.group("arg")
        found.append(Block(page, i + 2, lang, "\n".join(lines[i + 1 : end]), kind, arg))
        i = end + 1
    return found


def _python_blocks(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.lang in PYTHON]


def test_markers_are_known_and_give_reasons() -> None:
    problems = []
    for page in PAGES:
        for b in blocks(page):
            if b.marker not in {"", "skip", "needs", "real", "excerpt", "setup"}:
                problems.append(f"{b.where}: unknown marker docs-test: {b.marker}")
            if b.marker in {"skip", "needs", "real", "excerpt"} and not b.arg:
                problems.append(f"{b.where}: marker {b.marker} needs a reason/module/path")
            if b.marker in {"real", "excerpt"} and not (REPO / b.arg).is_file():
                problems.append(f"{b.where}: {b.arg} does not exist")
    assert not problems, "\n".join(problems)


def test_copies_match_their_files() -> None:
    stale = []
    for page in PAGES:
        for b in blocks(page):
            if b.marker not in {"real", "excerpt"} or not (REPO / b.arg).is_file():
                continue
            source = (REPO / b.arg).read_text(encoding="utf-8").rstrip("\n")
            if (b.marker == "real" and b.code != source) or b.code not in source:
                stale.append(f"{b.where}: the copy of {b.arg} differs from the file")
    assert not stale, "\n".join(stale)


def test_skips_stay_rare() -> None:
    skipped = [b.where for p in PAGES for b in blocks(p) if b.marker == "skip"]
    runnable = [b for p in PAGES for b in blocks(p) if b.lang in PYTHON | SHELL]
    assert len(skipped) <= max(3, len(runnable) // 10), f"too many skipped examples: {skipped}"


_RUNNER = """\
import importlib.util, json, sys
blocks = json.load(open(sys.argv[1], encoding="utf-8"))
ns = {"__name__": "__docs__"}
exec(compile(PRELUDE, "<prelude: the reader's own code>", "exec"), ns)
for b in blocks:
    if b["marker"] == "needs":
        missing = [m for m in b["arg"].split(",") if importlib.util.find_spec(m.strip()) is None]
        if missing:
            print("NOT RUN " + b["where"] + ": needs " + ",".join(missing), flush=True)
            continue
    source = "\\n" * (b["line"] - 1) + b["code"]
    exec(compile(source, b["path"], "exec"), ns)
"""


def _env(home: Path) -> dict[str, str]:
    # Nothing from the developer's environment (keys, location, disabled plugins) leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONTRACK_")}
    env["CARBONTRACK_HOME"] = str(home)
    env["CARBONTRACK_CACHE_DIR"] = str(home / "cache")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


@pytest.mark.parametrize(
    "page",
    [p for p in PAGES if any(b.marker not in {"real", "excerpt"} for b in _python_blocks(p))],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_python_examples_run(page: Path, tmp_path: Path) -> None:
    runnable = [b for b in _python_blocks(page) if b.marker not in {"real", "excerpt", "skip"}]
    data = [
        {
            "where": b.where,
            "path": str(b.page),
            "line": b.line,
            "code": b.code,
            "marker": b.marker,
            "arg": b.arg,
        }
        for b in runnable
    ]
    (tmp_path / "blocks.json").write_text(json.dumps(data), encoding="utf-8")
    (tmp_path / "run.py").write_text(f"PRELUDE = {PRELUDE!r}\n" + _RUNNER, encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "run.py"), str(tmp_path / "blocks.json")],
        cwd=work,
        env=_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, (
        f"an example in {page.relative_to(REPO)} failed (the traceback names its line; mark a "
        "block that cannot run here with <!-- docs-test: needs MODULE --> or, rarely, "
        f"<!-- docs-test: skip REASON -->):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    )


# -- shell blocks ----------------------------------------------------------------------------


@attrs.frozen
class Command:
    where: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


def _logical_lines(code: str, prompt_only: bool) -> Iterator[str]:
    pending = ""
    for raw in code.splitlines():
        if prompt_only and not raw.startswith("$ ") and not pending:
            continue  # output shown after a prompt
        line = raw.removeprefix("$ ")
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""


def commands(page: Path) -> list[Command]:
    """Every ``carbontrack`` command of the page's shell blocks (up to a pipe or redirection)."""
    found = []
    for b in blocks(page):
        if b.marker in {"skip", "real", "excerpt"}:
            continue
        # A console session: `console` blocks, and unlabelled ones that show a `$ ` prompt.
        session = b.lang == "console" or (b.lang == "" and "\n$ " in "\n" + b.code)
        if b.lang not in SHELL and not session:
            continue
        for offset, line in enumerate(_logical_lines(b.code, prompt_only=session)):
            for words in _simple_commands(line):
                env = []
                while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                    key, _, value = words.pop(0).partition("=")
                    env.append((key, value))
                if words and words[0] == "carbontrack":
                    found.append(Command(f"{b.where}+{offset}", tuple(words[1:]), tuple(env)))
    return found


def _simple_commands(line: str) -> Iterator[list[str]]:
    """The commands of a shell line, split at ``&&``, ``||``, ``;`` and ``|``, without
    redirections (``> FILE``) and comments."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:
        return
    words: list[str] = []
    skip_next = False
    for tok in tokens:
        if skip_next:
            skip_next = False
        elif tok in {"&&", "||", ";", "|", "&"}:
            yield words
            words = []
        elif tok in {">", ">>", "<", "2>", "&>"}:
            skip_next = True
        else:
            words.append(tok)
    yield words


ALL_COMMANDS = [c for p in PAGES for c in commands(p)]


def _split_run(argv: tuple[str, ...]) -> tuple[list[str], list[str]]:
    if argv and argv[0] == "run" and "--" in argv:
        cut = argv.index("--")
        return list(argv[:cut]), list(argv[cut + 1 :])
    return list(argv), []


def test_the_docs_show_carbontrack_commands() -> None:
    used = {c.argv[0] for c in ALL_COMMANDS if c.argv}
    assert {"run", "devices", "plugins", "report", "intensity"} <= used


@pytest.mark.parametrize("cmd", ALL_COMMANDS, ids=lambda c: f"{c.where} {' '.join(c.argv)}")
def test_shell_command_parses(cmd: Command) -> None:
    own, _child = _split_run(cmd.argv)
    out, err = io.StringIO(), io.StringIO()
    code: object = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            args, unknown = build_parser().parse_known_args(own)
        except SystemExit as exc:  # --help, or a usage error
            code = exc.code
    if code is not None:
        assert code == 0, f"{cmd.where}: carbontrack {' '.join(cmd.argv)}\n{err.getvalue()}"
        return
    assert not unknown, f"{cmd.where}: unknown arguments {unknown}"
    assert args.command is not None or own in (["--version"], ["--help"], ["-h"])


_NETWORK = {"--provider", "--geolocate"}


def _unique_runnable() -> list[Command]:
    seen, out = set(), []
    for c in ALL_COMMANDS:
        key = (c.argv, c.env)
        if key in seen or _NETWORK & set(c.argv) or not c.argv:
            continue
        seen.add(key)
        out.append(c)
    return out


@pytest.fixture(scope="module")
def home_with_a_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A carbontrack home holding one finished run, for ``carbontrack report``."""
    from carbontrack import track
    from carbontrack.testing import FakeDevice, FakeHardware

    home = tmp_path_factory.mktemp("home")
    hw = FakeHardware([FakeDevice("package-0", kind="cpu", watts=30.0)])
    with track(plugins=[hw], autoload=False, log_dir=home / "logs", verbose=0, epochs=2) as run:
        for _ in range(2):
            with run.epoch():
                pass
    return home


@pytest.mark.parametrize("cmd", _unique_runnable(), ids=lambda c: f"{c.where} {' '.join(c.argv)}")
def test_shell_command_runs(cmd: Command, home_with_a_run: Path, tmp_path: Path) -> None:
    own, child = _split_run(cmd.argv)
    argv = [*own, "--", "true"] if own and own[0] == "run" else own
    env = _env(home_with_a_run) | dict(cmd.env)
    proc = subprocess.run(
        [sys.executable, "-m", "carbontrack", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    shown = f"{cmd.where}: carbontrack {' '.join(cmd.argv)}"
    assert "Traceback" not in proc.stderr, f"{shown}\n{proc.stderr[-3000:]}"
    # `report` on paths the example names but this directory lacks says "no logs" and exits 1.
    allowed = {0, 1} if own[:1] == ["report"] and len(own) > 1 else {0}
    assert proc.returncode in allowed, f"{shown} exited {proc.returncode}\n{proc.stderr[-3000:]}"
    if child:
        assert textwrap.dedent(" ".join(child))  # the example's own command was replaced


def test_every_option_is_in_the_getting_started_table() -> None:
    from carbontrack import Settings

    page = (REPO / "docs" / "getting-started.md").read_text(encoding="utf-8")
    table = "\n".join(line for line in page.splitlines() if line.startswith("| `"))
    missing = [f.name for f in attrs.fields(Settings) if f"`{f.name}`" not in table]
    assert not missing, (
        f"docs/getting-started.md's options table lacks {missing}: add a row "
        "(| `option` | default | meaning |)"
    )
