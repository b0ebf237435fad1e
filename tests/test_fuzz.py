"""The atheris fuzz targets (fuzz/), 100,000 inputs each, as CI runs them.

Each target runs as a subprocess from a copy of its seed corpus (libFuzzer
adds new inputs to the first corpus directory: never the repository's), with
a fixed seed, so a run is reproducible; crash artifacts go to a temporary
directory. A crash (an invariant broken, any exception but the documented
one) fails the test and shows libFuzzer's report and the input. Long runs:
fuzz/README.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
RUNS = 100_000
TARGETS = {
    # target: (max_len, dictionary)
    "request": (4096, "request.dict"),
    "proxy": (2048, "proxy.dict"),
}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target(target: str, tmp_path: Path) -> None:
    max_len, dictionary = TARGETS[target]
    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ / "corpus" / target, corpus)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    command = [
        sys.executable,
        str(FUZZ / f"fuzz_{target}.py"),
        f"-runs={RUNS}",
        "-seed=20260402",
        f"-max_len={max_len}",
        "-timeout=10",  # seconds per input: a slow input is a failure too
        "-rss_limit_mb=1024",
        f"-dict={FUZZ / dictionary}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
        str(corpus),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    log = done.stderr[-6000:]
    assert done.returncode == 0, f"fuzz_{target} found a crash:\n{log}"
    assert not any(artifacts.iterdir()), log
    executed = re.search(r"stat::number_of_executed_units: (\d+)", done.stderr)
    assert executed is not None and int(executed[1]) >= RUNS, log
    coverage = re.search(r"DONE\s+cov: (\d+) ft: (\d+)", done.stderr)
    assert coverage is not None and int(coverage[1]) > 200, log  # the instrumentation works
