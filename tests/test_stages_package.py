"""What every stage process starts with (stages/__init__.py, stages/cli.py): OpenMP threads that
sleep when idle, progress bars on a terminal only, no library chatter, and an end that does not
collect the garbage of every library it loaded."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

PROBE = """import stages.params, os
from tqdm.auto import tqdm
for _ in tqdm(range(3), desc="a bar"):
    pass
print(os.environ.get("OMP_WAIT_POLICY"), os.environ.get("TQDM_DISABLE"))
"""


def probe(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "TQDM_DISABLE")}
    return subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True,
                          env={**clean, **env}, check=True)


def test_a_stage_process_sleeps_idle_threads_and_draws_no_bar_into_a_log():
    out = probe()
    assert out.stdout.split() == ["PASSIVE", "1"]
    assert "a bar" not in out.stderr  # stderr is a pipe here, as in a redirected log


def test_values_the_user_set_are_kept():
    assert probe(OMP_WAIT_POLICY="ACTIVE", TQDM_DISABLE="").stdout.split() == ["ACTIVE"]


def test_a_stage_process_ends_with_its_objects_frozen_and_its_output_whole(tmp_path):
    """The freeze runs after the libraries' own exit handlers (W&B, logging): registered before
    them, when ``stages`` is imported first. A handler registered before that import runs after
    the freeze and sees the objects frozen; one registered after it still writes its file whole."""
    out = tmp_path / "written.txt"
    code = ("import atexit, gc\n"
            "atexit.register(lambda: print(gc.get_freeze_count()))\n"
            "import stages\n"
            "kept = [[n] for n in range(5000)]\n"
            f"atexit.register(lambda: open({str(out)!r}, 'w').write('x' * 100000))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert int(result.stdout) >= 5000
    assert out.read_text() == "x" * 100000


def test_rouge_scores_without_absl_info_lines():
    code = ("from stages import cli\n"
            "def body():\n"
            "    from rouge_score import rouge_scorer\n"
            "    rouge_scorer.RougeScorer(['rougeL'])\n"
            "cli.run(body)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "Using default tokenizer" not in out.stderr, out.stderr


def test_datasets_says_nothing_of_jax_where_jax_is_installed(tmp_path):
    """GPU images often carry JAX; datasets then logs "JAX version ... available." at INFO while
    it is imported, which the stages' INFO logging would print in every stage that imports it."""
    for name in ("jax", "jaxlib"):  # just enough of an installed JAX for datasets to find it
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
        info = tmp_path / f"{name}-0.4.30.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.4.30\n")
    code = ("from stages import cli\n"
            "def body():\n"
            "    import datasets, logging\n"
            "    logging.getLogger('stages').info('datasets %s imported', datasets.__version__)\n"
            "cli.run(body)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    assert "datasets" in out.stderr and "imported" in out.stderr, out.stderr  # INFO lines are shown
    assert "JAX version" not in out.stderr, out.stderr


COMMANDS = sorted(p.stem for p in (ROOT / "stages").glob("*.py") if 'if __name__ == "__main__"' in p.read_text())


def test_a_stage_run_as_a_file_says_in_one_line_how_to_run_it(tmp_path):
    """`python stages/score.py` puts stages/ first on sys.path, where stages/tokenize.py stands in
    for the standard library's tokenize (or `stages` cannot be imported at all): one line says what
    to type instead, from the project root or from anywhere else."""
    assert {"score", "tokenize", "check_params", "summarize"} <= set(COMMANDS)
    for name in COMMANDS:
        for cwd, script in ((ROOT, f"stages/{name}.py"), (tmp_path, str(ROOT / "stages" / f"{name}.py"))):
            result = subprocess.run([sys.executable, script], cwd=cwd, capture_output=True, text=True, timeout=120)
            assert result.returncode == 1, (name, result.stderr[-2000:])
            assert result.stderr.splitlines() == [
                f"error: the stages are modules of the package stages/: from the project root, "
                f"run python -m stages.{name} (not python stages/{name}.py)"], result.stderr[-2000:]


def kernels(**env: str) -> list[str]:
    """What a stage process computes with: the pin it leaves in its environment, torch's choice."""
    from stages import CPU_KERNELS

    clean = {k: v for k, v in os.environ.items() if k not in CPU_KERNELS}  # this process imported stages
    code = ("import os, stages, torch\n"
            "print(os.environ.get('ATEN_CPU_CAPABILITY'), torch.backends.cpu.get_cpu_capability())")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**clean, **env}, check=True).stdout.split()


def test_an_x86_64_cpu_with_avx2_computes_with_avx2_kernels_unless_the_user_says_otherwise():
    """Whatever wider instructions it has (AVX-512): then x86-64 CPUs compute a run alike."""
    from stages import has_avx2

    if has_avx2():
        assert kernels() == ["avx2", "AVX2"]
        assert kernels(ATEN_CPU_CAPABILITY="default") == ["default", "DEFAULT"]  # the user's value is kept
    else:  # ARM, or an x86-64 CPU without AVX2: nothing pinned, torch's own choice
        assert kernels()[0] == "None"


def test_avx2_is_read_from_the_cpus_flags(tmp_path, monkeypatch):
    from stages import has_avx2

    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n")
    assert has_avx2(str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 avx avx512f_no\n")
    assert not has_avx2(str(cpuinfo))
    assert not has_avx2(str(tmp_path / "missing"))
    monkeypatch.setattr("platform.machine", lambda: "arm64")
    cpuinfo.write_text("flags\t\t: avx2\n")
    assert not has_avx2(str(cpuinfo))
