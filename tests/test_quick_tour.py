"""The README's quick tour, run as written: main job → export → route a text question → serve and
POST it → the gateway demo answered through the `openai` client.

The commands are read from README.md itself (the set-up block's main job and the "Quick tour"
section's blocks), so a README edit that breaks the tour breaks this test. Paths under `runs/`
and `artifacts/` go to a temporary directory and the ports to free ones. In the suite the main job
runs on its `:smoke` variant; with PROTEUS_QUICK_TOUR=full (`.ci/run`, after a fresh install) it
runs exactly as written.
"""

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FULL = os.environ.get("PROTEUS_QUICK_TOUR") == "full"


def code_blocks(text: str, language: str) -> list[str]:
    """The bodies of the fenced blocks of one language, in order."""
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def tour_text() -> tuple[str, str]:
    """(the set-up block, the Quick tour section) of the README."""
    readme = README.read_text()
    tour = readme.split("## Quick tour", 1)[1].split("\n## ", 1)[0]
    return code_blocks(readme, "bash")[0], tour


def shell_commands(block: str) -> list[str]:
    """One string per command of a bash block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def localise(command: str, tmp: Path, ports: dict[str, int]) -> str:
    """The README's command with its paths under tmp and its ports replaced by free ones."""
    command = re.sub(r"\b(runs|artifacts)/", lambda m: f"{tmp}/{m.group(1)}/", command)
    for readme_port, port in ports.items():
        command = command.replace(f"localhost:{readme_port}", f"127.0.0.1:{port}")
        command = command.replace(f"127.0.0.1:{readme_port}", f"127.0.0.1:{port}")
        command = command.replace(f"--port={readme_port}", f"--port={port}")
    return command


def python_argv(command: str) -> list[str]:
    """`python -m launch.x ...` (an optional trailing `&` dropped) as an argv for this Python."""
    argv = shlex.split(command.rstrip("& ").strip())
    assert argv[:2] == ["python", "-m"], f"not a python -m command: {command}"
    return [sys.executable, *argv[1:]]


def wait_for(url: str, process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {process.stdout.read()}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {timeout_s} s")


def read_until(process: subprocess.Popen, pattern: str, timeout_s: float = 120.0) -> re.Match:
    """Read the process's output line by line until a line matches (the demo's printed key)."""
    deadline, seen = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"no line matching {pattern!r} in: {''.join(seen)}")


def run(argv: list[str], env: dict) -> str:
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def servers():
    started = []
    yield started
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_the_readme_commands_are_found():
    setup, tour = tour_text()
    main_job = shell_commands(setup)[0].split("&&")[1].strip()
    assert main_job.startswith("python -m launch.train") and "quickstart.py" in main_job
    commands = shell_commands("".join(code_blocks(tour, "bash")[:3]))
    assert [c.split()[2] for c in commands if c.startswith("python")] == [
        "launch.export", "launch.route", "launch.serve", "launch.gateway"]
    assert "OpenAI(" in code_blocks(tour, "python")[0]


def test_the_quick_tour_runs_as_written(tmp_path, servers):
    setup, tour = tour_text()
    ports = {"8000": free_port(), "8080": free_port()}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    main_job = localise(shell_commands(setup)[0].split("&&")[1].strip(), tmp_path, ports)
    if not FULL:  # the shrunk main job: same code path, minutes less
        main_job = main_job.replace("quickstart.py ", "quickstart.py:smoke ")
        main_job = main_job.replace("quickstart.py --", "quickstart.py:smoke --")
    out = run(python_argv(main_job), env)
    assert "proteus_certified" in out and (tmp_path / "runs/quickstart/report.md").exists()

    export, route, serve, curl, gateway = [
        localise(c, tmp_path, ports) for block in code_blocks(tour, "bash")[:3]
        for c in shell_commands(block)]
    run(python_argv(export), env)
    routed = run(python_argv(route), env)
    assert "τ=0.80" in routed and "Which gas do plants absorb?" in routed, routed

    servers.append(subprocess.Popen(python_argv(serve), cwd=REPO, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    wait_for(f"http://127.0.0.1:{ports['8000']}/healthz", servers[-1])
    body = re.search(r"-d '(.*?)'", curl).group(1)
    answer = httpx.post(re.search(r"(127\.0\.0\.1:\d+\S*)", curl).group(1).join(["http://", ""]),
                        content=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 200 and answer.json()["tau"] == 0.8, answer.text

    servers.append(subprocess.Popen(python_argv(gateway), cwd=REPO, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    key = read_until(servers[-1], r"API key \(tenant 'demo'\): (\S+)").group(1)
    wait_for(f"http://127.0.0.1:{ports['8080']}/healthz", servers[-1])
    client_code = localise(code_blocks(tour, "python")[0], tmp_path, ports)
    client_code = client_code.replace("<the key it printed>", key)
    done = subprocess.run([sys.executable, "-c", client_code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "says hi from upstream" in done.stdout, done.stdout
