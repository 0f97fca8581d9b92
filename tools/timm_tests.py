#!/usr/bin/env python
"""Run timm's own model test suite (``tests/test_models.py`` of the installed timm version) on the HarDNet models.

The test file comes from timm's source distribution on PyPI (downloaded once into ``--cache``). Tests that
download pretrained weights are left out (``-k 'not pretrained'``: no network is needed past the download
of the test file). Extra arguments go to pytest, e.g. ``-x`` or ``-k fx``.
"""
import argparse
import subprocess
import sys
import tarfile
from pathlib import Path


def fetch_timm_tests(cache: Path) -> Path:
    """Folder holding ``test_models.py`` of the installed timm version (downloaded and unpacked once)."""
    import timm

    version = timm.__version__
    target = cache / f'timm-{version}'
    if (target / 'tests' / 'test_models.py').is_file():
        return target / 'tests'
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, '-m', 'pip', 'download', '--quiet', '--no-deps', '--no-binary', ':all:',
                    f'timm=={version}', '--dest', str(cache)], check=True)
    with tarfile.open(cache / f'timm-{version}.tar.gz') as archive:
        members = [m for m in archive.getmembers()
                   if m.name.startswith(f'timm-{version}/tests/') and m.isfile()]
        archive.extractall(cache, members=members, filter='data')
    return target / 'tests'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--cache', default='.cache/timm_tests', help='where the test files are kept')
    parser.add_argument('--skip-if-offline', action='store_true',
                        help='exit 0 with a message when the test file cannot be downloaded (CI without PyPI)')
    args, pytest_args = parser.parse_known_args(argv)
    try:
        tests = fetch_timm_tests(Path(args.cache))
    except (subprocess.CalledProcessError, OSError, tarfile.TarError) as e:
        if not args.skip_if_offline:
            raise
        print(f'timm test suite skipped: its source distribution could not be fetched ({e})')
        return 0
    command = [sys.executable, '-m', 'pytest', str(tests / 'test_models.py'), '-p', 'hardnet_backbones',
               '-k', 'hardnet and not pretrained', '-q', '-o', 'addopts=', '--rootdir', str(tests.parent),
               '-W', 'ignore::pytest.PytestUnknownMarkWarning',
               *pytest_args]
    print(' '.join(command), flush=True)
    return subprocess.call(command)


if __name__ == '__main__':
    sys.exit(main())
