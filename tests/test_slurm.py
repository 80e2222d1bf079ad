"""The SLURM templates: valid bash, and the `accelerate launch` line they build from SLURM's variables."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from accelerate.commands.launch import launch_command_parser

from tests.conftest import ROOT

SLURM = ROOT / "scripts" / "slurm"
ENTRY = ["distill/train_teacher.py", "--recipe", "teacher", "--output-dir"]


def run(script: str, args: list[str], env: dict[str, str], path_dir: Path | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")} | env | {"DISTILL_DRY_RUN": "1"}
    if path_dir is not None:
        env["PATH"] = f"{path_dir}:{env['PATH']}"
    return subprocess.run(["bash", str(SLURM / script), *args], cwd=ROOT, env=env, capture_output=True, text=True)


def launch_args(line: str):
    """Parse the printed line with Accelerate's own parser: every flag must be one it knows."""
    words = shlex.split(line)
    assert words[:2] == ["accelerate", "launch"]
    return launch_command_parser().parse_args(words[2:])


@pytest.mark.parametrize("name", ["launch.sh", "one_node.sbatch", "multi_node.sbatch"])
def test_bash_syntax(name):
    proc = subprocess.run(["bash", "-n", str(SLURM / name)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def fake_slurm(tmp_path: Path) -> Path:
    """scontrol and srun as SLURM would answer on the first node of a 2-node job."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text("#!/bin/sh\nprintf 'gpu-017\\ngpu-018\\n'\n")
    (fake / "srun").write_text('#!/bin/sh\nwhile [ "${1#--}" != "$1" ]; do shift; done\nexec "$@"\n')
    for f in fake.iterdir():
        f.chmod(0o755)
    return fake


def test_one_node_four_gpus_and_resume(tmp_path):
    out = tmp_path / "teacher"
    env = {"SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0", "SLURM_GPUS_ON_NODE": "4", "SLURM_CPUS_PER_TASK": "16"}
    proc = run("one_node.sbatch", [*ENTRY, str(out)], env, path_dir=fake_slurm(tmp_path))
    assert proc.returncode == 0, proc.stderr
    args = launch_args(proc.stdout.strip())
    assert (args.multi_gpu, args.num_processes, args.num_machines, args.num_cpu_threads_per_process) == (True, 4, 1, 4)
    assert args.quiet and args.training_script == "distill/train_teacher.py"
    assert args.training_script_args == ["--recipe", "teacher", "--output-dir", str(out)]
    (out / "state").mkdir(parents=True)  # a checkpoint exists: the requeued job resumes
    args = launch_args(run("one_node.sbatch", [*ENTRY, str(out)], env, path_dir=tmp_path / "bin").stdout.strip())
    assert args.training_script_args[-1] == "--resume"


def test_multi_node_rendezvous_from_slurm(tmp_path):
    fake = fake_slurm(tmp_path)
    env = {
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_GPUS_ON_NODE": "4",
        "SLURM_CPUS_PER_TASK": "32",
        "SLURM_JOB_ID": "123456",
        "SLURM_JOB_NODELIST": "gpu-[017-018]",
    }
    proc = run("multi_node.sbatch", [*ENTRY, str(tmp_path / "t")], env, path_dir=fake)
    assert proc.returncode == 0, proc.stderr
    args = launch_args(proc.stdout.strip())
    assert (args.multi_gpu, args.num_processes, args.num_machines, args.machine_rank) == (True, 8, 2, 1)
    assert (args.main_process_ip, args.main_process_port) == ("gpu-017", 20000 + 123456 % 20000)
    assert args.rdzv_backend == "static" and args.num_cpu_threads_per_process == 8


def test_no_gpu_is_one_line(tmp_path):
    env = {"SLURM_JOB_NUM_NODES": "1", "PATH": f"{tmp_path}:/usr/bin:/bin"}  # no SLURM_GPUS_ON_NODE, no nvidia-smi
    proc = run("launch.sh", [*ENTRY, str(tmp_path / "t")], env)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no GPU")


@pytest.mark.slow
def test_two_nodes_really_rendezvous(synthetic_dir, tmp_path):
    """launch.sh run as SLURM runs it on 2 nodes (here: 2 shells on this machine, 1 CPU process each)."""
    from tests.conftest import tiny

    out = tmp_path / "teacher"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env |= {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SLURM_JOB_NUM_NODES": "2", "SLURM_GPUS_ON_NODE": "1"}
    env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(20000 + os.getpid() % 20000)}
    cmd = ["bash", str(SLURM / "launch.sh"), "distill/train_teacher.py", "--recipe", "teacher_smoke"]
    cmd += ["--output-dir", str(out), *tiny(synthetic_dir)]
    logs = [(tmp_path / f"node{rank}.out", tmp_path / f"node{rank}.err") for rank in (0, 1)]
    nodes = []
    for rank, (out_log, err_log) in enumerate(logs):
        with out_log.open("w") as stdout, err_log.open("w") as stderr:  # the child holds its own copies
            node_env = env | {"SLURM_NODEID": str(rank)}
            nodes.append(
                subprocess.Popen(cmd, cwd=ROOT, env=node_env, stdout=stdout, stderr=stderr, start_new_session=True)
            )
    # A node that fails leaves the other waiting for it at the next collective: stop waiting at the first failure
    deadline = time.monotonic() + 300
    while any(node.poll() is None for node in nodes) and time.monotonic() < deadline:
        if any(node.poll() not in (None, 0) for node in nodes):
            break
        time.sleep(0.5)
    for node in nodes:
        if node.poll() is None:  # the launcher, torchrun and the worker: the whole session
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
    stdout = [out_log.read_text() for out_log, _ in logs]
    tails = "\n".join(f"node {rank}: {err_log.read_text()[-3000:]}" for rank, (_, err_log) in enumerate(logs))
    assert [node.returncode for node in nodes] == [0, 0], tails
    assert "x2" in stdout[0] and "Final test accuracy:" in stdout[0]  # one run over the two "nodes"
    assert stdout[1] == ""  # the second node's process is not the main one: it prints nothing
    assert (out / "summary.json").is_file() and (out / "cache" / "meta.json").is_file()


def test_the_one_command_pipeline_through_the_templates(tmp_path):
    """distill/run.py resumes by itself: launch.sh passes it on as it is, on 2 nodes x 2 GPUs too."""
    env = {"SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1", "SLURM_GPUS_ON_NODE": "2", "SLURM_JOB_ID": "77",
           "SLURM_JOB_NODELIST": "gpu-[017-018]"}  # fmt: skip
    pipeline = ["distill/run.py", "--student-recipe", "kd_max", "--test-pkl", "t.pkl", "--out", "sub.csv"]
    proc = run("multi_node.sbatch", pipeline, env, path_dir=fake_slurm(tmp_path))
    assert proc.returncode == 0, proc.stderr
    args = launch_args(proc.stdout.strip().splitlines()[-1])
    assert args.training_script == "distill/run.py" and args.training_script_args == pipeline[1:]
    assert (args.num_processes, args.num_machines, args.machine_rank) == (4, 2, 1) and "--resume" not in pipeline
