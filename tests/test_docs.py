"""Docs check: what README.md and docs/*.md show still matches the code.

Nothing is executed. Every `keras-mixer ...` command in a bash block is parsed by
the real CLI parser, so a renamed flag or command fails here; Python snippets are
compiled, and every keras_mixer name they use must resolve, with the arguments
given binding to its signature; `python -m benchmarks` commands are checked
against the harness' own `--list` and `--help`; repository paths and links must
exist. The quick start's commands really run in CI (`.ci/run`).
"""

import argparse
import ast
import contextlib
import glob
import importlib
import inspect
import io
import os
import re
import shlex
import subprocess
import sys

import pytest

from keras_mixer.cli import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = "README.md"
DOCS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
# The Android demo's guide shows keras-mixer commands too.
PAGES = [README, *DOCS, "android_demo/README.md"]
QUICK_START = {
    "install": 'python3 -m venv .venv && . .venv/bin/activate && pip install -c constraints.txt'
               ' -e ".[all,test]" && keras-mixer train',
    "test": ". .venv/bin/activate && python -m pytest",
}
SHELL_LANGS = ("bash", "sh", "shell", "console")
COMMAND_SEPARATORS = {"&&", "||", ";", "|", "&"}
# Paths inside the repository that the docs mention: they must exist.
REPO_PATH = re.compile(r"(?<![\w/.$-])((?:keras_mixer|export|tests|benchmarks|android_demo|docs|\.ci)"
                       r"/[\w./-]*\w)")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def read(page):
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return f.read()


def fenced_blocks(page):
    """[(language, first line number, text)] of the page's fenced code blocks."""
    blocks, lang, start, lines = [], None, 0, []
    for number, line in enumerate(read(page).splitlines(), 1):
        if line.startswith("```") and lang is None:
            lang, start, lines = line[3:].strip() or "text", number + 1, []
        elif line.startswith("```"):
            blocks.append((lang, start, "\n".join(lines)))
            lang = None
        elif lang is not None:
            lines.append(line)
    return blocks


def shell_commands(text):
    """Each simple command of a shell block as argv: continuations joined, VAR=value
    assignments substituted into later lines, split at && ; | and comments dropped."""
    variables, commands = {}, []
    for line in text.replace("\\\n", " ").splitlines():
        for name, value in variables.items():
            line = line.replace("${" + name + "}", value).replace("$" + name, value)
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        command = []
        for token in [*lexer, ";"]:
            if token not in COMMAND_SEPARATORS:
                command.append(token)
                continue
            if command and command[0] == "export":
                command = command[1:]
            while command and re.fullmatch(r"[A-Za-z_]\w*=.*", command[0]):
                name, value = command.pop(0).split("=", 1)
                variables[name] = value
            if command:
                commands.append(command)
            command = []
    return commands


def commands(program):
    """[(where, argv)] of every command in the docs that starts with `program`."""
    found = []
    for page in PAGES:
        for lang, line, text in fenced_blocks(page):
            if lang in SHELL_LANGS:
                found += [(f"{page}:{line}", argv) for argv in shell_commands(text)
                          if argv[:len(program)] == program]
    return found


def strict(parser):
    """`parser` and its sub-commands without abbreviations: the docs spell flags out,
    so a flag renamed to a longer name (--epoch -> --epochs) is caught too."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                strict(sub)
    return parser


def cli_error(argv):
    """The parser's complaint about `keras-mixer ARGV`, or None if it parses."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            strict(build_parser()).parse_args(argv)
    except SystemExit as exit_:
        return None if exit_.code == 0 else stderr.getvalue().strip().splitlines()[-1]
    return None


CLI_COMMANDS = commands(["keras-mixer"])


def test_the_checker_finds_commands_and_rejects_a_renamed_flag():
    assert len(CLI_COMMANDS) >= 30, CLI_COMMANDS
    assert ["keras-mixer", "train"] in [argv for _, argv in CLI_COMMANDS]
    assert "--epoch" in cli_error(["train", "--epoch", "3"])
    assert "--quantise" in cli_error(["export", "tflite", "m.keras", "-o", "m.tflite", "--quantise", "int8"])
    assert "invalid choice: 'trian'" in cli_error(["trian"])
    assert shell_commands("A=x/y\nFOO=1 keras-mixer export tflite m.keras \\\n  -o $A/m.tflite  # c") == [
        ["keras-mixer", "export", "tflite", "m.keras", "-o", "x/y/m.tflite"]]


@pytest.mark.parametrize("where, argv", CLI_COMMANDS, ids=[w for w, _ in CLI_COMMANDS])
def test_cli_command_parses(where, argv):
    assert cli_error(argv[1:]) is None, f"{where}: {shlex.join(argv)}"


def test_quick_start_commands_are_first_and_unchanged():
    text = read(README)
    for step, command in QUICK_START.items():
        marker = f"<!-- ci:{step} -->\n```bash\n{command}\n```"
        assert marker in text, f"README.md: the {step} command after <!-- ci:{step} --> changed"
    first_block = text.index("```")
    assert text.index("<!-- ci:install -->") < first_block < text.index("<!-- ci:test -->")


def test_readme_is_short_and_links_every_docs_page():
    text = read(README)
    assert len(text.splitlines()) <= 220
    linked = {target.split("#")[0] for target in LINK.findall(text)}
    assert DOCS and not set(DOCS) - linked, f"not linked from README.md: {set(DOCS) - linked}"


def resolve(dotted):
    """The object a dotted keras_mixer name refers to (modules imported as needed)."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], 1):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[:i + 1]))
    return obj


def snippet_problems(tree):
    """Names of keras_mixer that do not resolve, and calls that do not bind."""
    names, problems = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update({a.asname or a.name: a.name for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        chain, func = [], node.func
        while isinstance(func, ast.Attribute):
            chain.insert(0, func.attr)
            func = func.value
        if not (isinstance(func, ast.Name) and names.get(func.id, "").startswith("keras_mixer")):
            continue
        dotted = ".".join([names[func.id], *chain])
        try:
            target = resolve(dotted)
        except (ImportError, AttributeError) as err:
            problems.append(f"line {node.lineno}: {dotted} does not resolve ({err})")
            continue
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            continue
        try:
            inspect.signature(target).bind(*node.args, **{k.arg: k.value for k in node.keywords})
        except TypeError as err:
            problems.append(f"line {node.lineno}: {dotted}(...) does not fit its signature: {err}")
    return problems


PY_SNIPPETS = [(f"{page}:{line}", text) for page in PAGES
               for lang, line, text in fenced_blocks(page) if lang == "python"]


@pytest.mark.parametrize("where, source", PY_SNIPPETS, ids=[w for w, _ in PY_SNIPPETS])
def test_python_snippet_compiles_and_fits_the_api(where, source):
    compile(source, where, "exec")
    assert snippet_problems(ast.parse(source)) == [], where


def test_snippet_check_catches_a_renamed_keyword_and_a_missing_name():
    tree = ast.parse("import keras_mixer\nfrom keras_mixer.export import export_tflite\n"
                     "keras_mixer.MixerB16(weight='imagenet')\nkeras_mixer.MixerZ9()\n"
                     "export_tflite('m.keras', 'o.tflite', 'int8')\n")
    problems = snippet_problems(tree)
    assert len(problems) == 3 and "weight" in problems[0] and "MixerZ9" in problems[1], problems


def harness(*args):
    done = subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"python -m benchmarks {' '.join(args)}:\n{done.stderr[-2000:]}"
    return done.stdout


def test_benchmark_commands_match_the_harness():
    shown = commands(["python", "-m", "benchmarks"])
    assert shown, "docs show no `python -m benchmarks` command"
    if not os.path.isfile(os.path.join(ROOT, "benchmarks", "__main__.py")):
        pytest.skip("benchmarks/__main__.py does not exist yet: the harness cannot list its sections")
    # Any word of the listing counts: robust to its layout, and a renamed section
    # is still missing from it.
    sections = set(re.findall(r"[A-Za-z_][\w-]*", harness("--list")))
    usage = harness("--help")
    for where, argv in shown:
        for arg in argv[3:]:
            known = re.search(rf"(?<![\w-]){re.escape(arg)}(?![\w-])", usage) if arg.startswith("-") \
                else arg in sections
            assert known, f"{where}: {shlex.join(argv)}: {arg!r} is not in the harness' --list/--help"


def test_scripts_named_in_commands_exist():
    for where, argv in commands(["python"]) + commands(["python3"]):
        scripts = [a for a in argv[1:2] if a.endswith(".py")]
        assert all(os.path.isfile(os.path.join(ROOT, s)) for s in scripts), f"{where}: {argv}"


def github_anchor(heading):
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("page", PAGES)
def test_paths_and_links_exist(page):
    text = read(page)
    missing = [p for p in REPO_PATH.findall(text) if not os.path.exists(os.path.join(ROOT, p))]
    for target in LINK.findall(text):
        if "://" in target:
            continue
        path, _, anchor = target.partition("#")
        path = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(os.path.join(ROOT, path)):
            missing.append(target)
        elif anchor and anchor not in {github_anchor(h) for h in re.findall(r"^#+ (.+)$", read(path), re.M)}:
            missing.append(target)
    assert missing == [], f"{page} names paths or anchors that do not exist"
