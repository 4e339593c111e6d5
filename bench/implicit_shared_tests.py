"""Run implicit's own shared model tests, unmodified, against the drop-in.

Issue #15's acceptance check: ``tests/recommender_base_test.py`` of
implicit's source archive (the version installed in ``--peers-python``,
0.7.3 by default), with one test class whose ``_get_model`` returns
``bpr_numba.implicit.BayesianPersonalizedRanking(factors=3,
regularization=0, random_state=42)`` (the parameters of implicit's own
``tests/bpr_test.py``). The file is taken from the source archive on the
package index, whose sha256 the index publishes and this script checks; it
is written to a temporary folder, never into the project. The tests run in
the peers' interpreter (implicit installed: its ``ParameterWarning`` is one
of the things they check) with this checkout first on ``PYTHONPATH``.

Needs the package index (or ``--sdist`` with a local copy of the archive).

Example::

    python bench/implicit_shared_tests.py --peers-python /work/peers-venv/bin/python
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INDEX = "https://pypi.org/simple"
TEST_FILE = "tests/recommender_base_test.py"
TEST_CLASS = '''\
import unittest

from recommender_base_test import RecommenderBaseTestMixin

from bpr_numba.implicit import BayesianPersonalizedRanking


class BprNumbaDropInTest(unittest.TestCase, RecommenderBaseTestMixin):
    def _get_model(self):
        return BayesianPersonalizedRanking(factors=3, regularization=0, random_state=42)
'''


def peer_version(python):
    """implicit's version in ``python``, which must also import the checkout's dependencies."""
    probe = ("import importlib.util as u, implicit; "
             "missing = [m for m in ('numpy', 'scipy', 'numba', 'pytest') "
             "if u.find_spec(m) is None]; "
             "print(implicit.__version__, *missing)")
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{python} cannot import implicit:\n{out.stderr.strip()}")
    version, *missing = out.stdout.split()
    if missing:
        raise SystemExit(f"{python} lacks {', '.join(missing)}: the tests import this checkout "
                         f"there too (pip install {' '.join(missing)})")
    return version


def fetch_sdist(version, folder, index=INDEX):
    """Download ``implicit-VERSION.tar.gz`` from the index; check the sha256 it publishes."""
    page = urllib.request.urlopen(f"{index}/implicit/", timeout=60).read().decode()
    name = re.escape(f"implicit-{version}.tar.gz")
    match = re.search(rf'href="([^"#]+{name})#sha256=([0-9a-f]{{64}})"', page)
    if match is None:
        raise SystemExit(f"no implicit-{version}.tar.gz with a sha256 on {index}/implicit/")
    url, expected = match.groups()
    path = Path(folder) / f"implicit-{version}.tar.gz"
    urllib.request.urlretrieve(url, path)
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != expected:
        raise SystemExit(f"{url}: sha256 {got}, the index says {expected}")
    return path, got


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peers-python", default="/work/peers-venv/bin/python",
                   help="interpreter with implicit, pytest and numba installed")
    p.add_argument("--sdist", type=Path, default=None,
                   help="a local implicit-X.Y.Z.tar.gz instead of downloading one")
    args, pytest_args = p.parse_known_args(argv)

    version = peer_version(args.peers_python)
    with tempfile.TemporaryDirectory() as tmp:
        if args.sdist is None:
            sdist, digest = fetch_sdist(version, tmp)
        else:
            sdist = args.sdist
            digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        with tarfile.open(sdist) as archive:
            member = next(m for m in archive.getmembers()
                          if m.name.endswith("/" + TEST_FILE))
            text = archive.extractfile(member).read()
        (Path(tmp) / "recommender_base_test.py").write_bytes(text)
        (Path(tmp) / "test_bpr_numba_drop_in.py").write_text(TEST_CLASS)
        print(f"implicit {version} installed; {member.name} from {sdist.name} "
              f"(sha256 {digest}), {text.count(b'    def test_')} tests", flush=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT)] + [x for x in [os.environ.get("PYTHONPATH")] if x]))
        return subprocess.run(
            [args.peers_python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "test_bpr_numba_drop_in.py", *pytest_args], cwd=tmp, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
