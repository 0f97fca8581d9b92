"""The README and docs tell the truth about the tools: every command they show parses, every link resolves."""
import configparser
import importlib
import re
import shlex
from pathlib import Path
from typing import List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / 'README.md', ROOT / 'CHANGELOG.md', *sorted((ROOT / 'docs').glob('*.md'))]
README_MAX_LINES = 150


def _console_scripts() -> dict:
    """``hardnet-train`` -> ``hardnet_backbones.cli.train``, from setup.cfg."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / 'setup.cfg')
    scripts = {}
    for line in parser['options.entry_points']['console_scripts'].strip().splitlines():
        name, target = (part.strip() for part in line.split('='))
        scripts[name] = target.split(':')[0]
    return scripts


SCRIPTS = _console_scripts()


def _bash_commands(page: Path) -> List[Tuple[str, int, List[str]]]:
    """(page name, line, argv) of each command in the page's fenced bash blocks (continuations joined)."""
    commands, in_bash, pending, start = [], False, '', 0
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.startswith('```'):
            in_bash = line.strip() == '```bash'
            continue
        if not in_bash:
            continue
        if not pending:
            start = number
        pending += line.rstrip('\\') + ' '
        if not line.endswith('\\'):
            words = shlex.split(pending, comments=True)
            if words:
                commands.append((page.name, start, words))
            pending = ''
    return commands


def _module_run_by(tool: Path) -> str:
    """The module whose ``main`` a script of tools/ runs."""
    match = re.search(r'^from ([\w.]+) import main$', tool.read_text(), flags=re.M)
    return match.group(1) if match else ''


def _tool_module(words: List[str]) -> Tuple[str, List[str]]:
    """The CLI module a command runs and its arguments ('' when it runs none of our tools)."""
    for i, word in enumerate(words):
        match = re.fullmatch(r'tools/(\w+)\.py', word)
        if match:
            return _module_run_by(ROOT / word), words[i + 1:]
        if word in SCRIPTS:
            return SCRIPTS[word], words[i + 1:]
    return '', []


COMMANDS = [c for page in PAGES for c in _bash_commands(page)]
TOOL_COMMANDS = [c for c in COMMANDS if _tool_module(c[2])[0]]


def test_the_pages_show_tool_commands():
    assert len(TOOL_COMMANDS) >= 20
    assert {_tool_module(words)[0] for _, _, words in TOOL_COMMANDS} >= {
        f'hardnet_backbones.cli.{n}' for n in ('train', 'evaluate', 'detect', 'segment', 'classify', 'export')}


@pytest.mark.parametrize('page, line, words', TOOL_COMMANDS, ids=lambda v: str(v) if isinstance(v, (str, int)) else '')
def test_every_shown_command_parses(page, line, words):
    module_name, arguments = _tool_module(words)
    module = importlib.import_module(module_name)
    try:
        module.get_args_parser().parse_args(arguments)
    except SystemExit as e:
        pytest.fail(f'{page}:{line}: {shlex.join(words)} does not parse (exit {e.code})')


def test_every_tool_explains_itself_with_help(capsys):
    for module_name in sorted(set(SCRIPTS.values())):
        parser = importlib.import_module(module_name).get_args_parser()
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(['--help'])
        assert exit_info.value.code == 0
        assert parser.description, module_name
        for action in parser._actions:
            assert action.help, f'{module_name}: {"/".join(action.option_strings) or action.dest} has no help'
    capsys.readouterr()


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return text.replace(' ', '-')


@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for target in re.findall(r'\]\(([^)\s]+)\)', page.read_text()):
        if re.match(r'[a-z]+://', target):
            continue
        path, _, anchor = target.partition('#')
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f'{page.name}: {target} does not exist'
        if anchor:
            headings = re.findall(r'^#+ (.+)$', linked.read_text(), flags=re.M)
            assert anchor in {_slug(h) for h in headings}, f'{page.name}: no heading #{anchor} in {linked.name}'


def test_the_readme_is_a_front_page():
    text = (ROOT / 'README.md').read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    assert 'make test' in text and 'make demo' in text
    for page in ('models', 'training', 'data', 'inference', 'deployment', 'benchmarks', 'architecture', 'app',
                 'bad_input'):
        assert f'docs/{page}.md' in text


def test_the_ci_script_runs_the_readme_test_command():
    assert 'make test' in (ROOT / '.ci' / 'run').read_text()
