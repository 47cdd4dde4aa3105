import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# The full data sets (../shared/data/README.md lists them): HFSSL_DATA_DIR, by default ../shared/data beside the checkout.
DATA_DIR = pathlib.Path(os.environ.get("HFSSL_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")
SHARED_DATA = DATA_DIR  # the name older tests import
# Small cuts of the same sets, kept in the repository (tests/fixtures/README.md): what a clone without the data runs on.
FIXTURES = REPO_ROOT / "tests" / "fixtures"
DATA_SETS = ("fashion-mnist", "corpus", "wordnet-supersenses", "emoji-captions")


def has_full_data(name: str) -> bool:
    """Whether the full set ``name`` is in HFSSL_DATA_DIR (else the tests read its fixture)."""
    return (DATA_DIR / name).is_dir()


def data_path(name: str) -> pathlib.Path:
    """The folder of set ``name``: the full set when HFSSL_DATA_DIR holds it, else its in-repo fixture."""
    return DATA_DIR / name if has_full_data(name) else FIXTURES / name


def require_full_data(name: str, why: str) -> pathlib.Path:
    """The full set ``name``, or a skip saying why the fixture cannot stand in for it."""
    if not has_full_data(name):
        pytest.skip(f"needs the full {name} set ({why}): set HFSSL_DATA_DIR to a folder holding {name}/")
    return DATA_DIR / name


@pytest.fixture(scope="session")
def shared_data(tmp_path_factory) -> pathlib.Path:
    """A folder with the shared data layout (``corpus/train.jsonl.gz``, ``fashion-mnist/...``): HFSSL_DATA_DIR
    when it holds every set, else one whose sets are the full ones where present and the fixtures otherwise."""
    if all(has_full_data(name) for name in DATA_SETS):
        return DATA_DIR
    if not any(has_full_data(name) for name in DATA_SETS):
        return FIXTURES
    folder = tmp_path_factory.mktemp("data")
    for name in DATA_SETS:
        (folder / name).symlink_to(data_path(name), target_is_directory=True)
    return folder


def word_vector_figure_tolerances(figures: dict[str, float]) -> dict[str, float]:
    """How far the six word-vector figures (``wordsim353_spearman``, ``simlex999_spearman``, ``analogy_accuracy`` and
    their ``_oov_ratio``) computed by another code path from the same float32 vectors may be from ``figures``.

    Cosine similarities computed by torch (MKL) and by gensim (numpy's OpenBLAS) differ in their last bit or two, and
    so do those of OpenBLAS' own kernels (``OPENBLAS_CORETYPE=Haswell`` against another) and thread counts. Two pairs
    whose float32 similarities are that close can swap ranks: measured, one swap moved SimLex-999's Spearman by
    4.4e-6. One swap of adjacent ranks among n pairs changes the sum of squared rank differences by at most
    2(n - 1), so Spearman by at most 12 / (n (n + 1)); three such swaps are allowed. An analogy whose two best
    answers are that close can go either way: one question is allowed. The out-of-vocabulary ratios are counts:
    exact.
    """
    from hfssl.evaluation.word_vectors import gensim_test_file, read_word_pairs

    tolerances = {}
    for name, filename in (("wordsim353", "wordsim353.tsv"), ("simlex999", "simlex999.txt")):
        scored = round(len(read_word_pairs(gensim_test_file(filename))) * (1 - figures[f"{name}_oov_ratio"]))
        tolerances[f"{name}_spearman"] = 3 * 12 / (scored * (scored + 1))
        tolerances[f"{name}_oov_ratio"] = 1e-12
    answered = round(19544 * (1 - figures["analogy_oov_ratio"]))  # questions-words.txt holds 19,544 analogies
    tolerances["analogy_accuracy"] = 1 / answered + 1e-12
    tolerances["analogy_oov_ratio"] = 1e-12
    return tolerances


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module's tests (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``).

    The models of the tests are tiny: a second thread gains them little on an idle 2-core machine (the
    Fashion-MNIST run of tests/test_recipes.py: 16 s with 2, 20 s with 1), and when other processes load the
    cores the threads' spin-waiting makes them several times slower (tests/test_language_models.py and
    tests/test_gpt.py without their 2-process runs: 244 s with 2 threads, 87 s with 1, next to one busy process)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_vit_config(image_size: int = 16, num_channels: int = 3) -> dict:
    return dict(
        model_type="vit",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=image_size,
        patch_size=4,
        num_channels=num_channels,
    )


def tiny_resnet_config(num_channels: int = 3) -> dict:
    return dict(
        model_type="resnet",
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        num_channels=num_channels,
    )


def tiny_convnext_config(num_channels: int = 3) -> dict:
    return dict(model_type="convnext", hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_channels=num_channels)


@pytest.fixture(scope="session")
def corpus_documents(shared_data) -> list[str]:
    """The corpus' training documents (1,767 texts, or the fixture's 201; paragraphs separated by blank lines)."""
    import gzip
    import json

    with gzip.open(shared_data / "corpus" / "train.jsonl.gz", "rt") as handle:
        return [json.loads(line)["text"] for line in handle]


def launch_two_processes(recipe: str, arguments: list[str], cwd: pathlib.Path, timeout: int = 300):
    """``accelerate launch`` of ``recipes/<recipe>`` on 2 CPU processes (gloo, one thread each);
    returns the finished ``subprocess.CompletedProcess``, having asserted a zero exit code."""
    import subprocess
    import sys

    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO_ROOT / "accelerate_config.yaml"),
        "--num_processes", "2", str(REPO_ROOT / "recipes" / recipe), *arguments,
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


# Checks that an export loads with plain transformers run in one Python process that never imports hfssl, started
# at the first check and shared by all of them: its start (torch and transformers imported) costs ~5 s on 2 cores,
# more than a check. It runs each script in a fresh namespace and fails the check when hfssl got imported.
PLAIN_TRANSFORMERS_SERVER = r"""
import contextlib, io, json, os, sys, traceback
import torch, transformers  # noqa: F401  what every script imports, imported once
answers = os.fdopen(os.dup(1), "w")  # the answers' own channel: output written to fd 1 goes to stderr instead
os.dup2(2, 1)
for line in sys.stdin:
    out, error = io.StringIO(), None
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(json.loads(line), "<script>", "exec"), {"__name__": "__main__"})
    except BaseException:
        error = traceback.format_exc()
    if "hfssl" in sys.modules:
        error = (error or "") + "the script imported hfssl: this process stops, so that no later check runs with it"
    answers.write(json.dumps({"stdout": out.getvalue(), "error": error}) + "\n")
    answers.flush()
    if "hfssl" in sys.modules:
        break
"""
_plain_transformers = None


def run_without_hfssl(script: str, timeout: float = 120) -> str:
    """Run ``script`` in the shared process that has plain transformers and never imports hfssl (in which
    ``"hfssl" in sys.modules`` is False); returns what it printed. An exception in it fails the calling test."""
    import atexit
    import json
    import select
    import subprocess
    import sys
    import tempfile

    global _plain_transformers
    if _plain_transformers is None or _plain_transformers.poll() is not None:
        stderr = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: warnings cannot fill it and block
        _plain_transformers = subprocess.Popen(
            [sys.executable, "-c", PLAIN_TRANSFORMERS_SERVER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1,
        )  # fmt: skip
        _plain_transformers.stderr_file = stderr
        atexit.register(_plain_transformers.kill)
    server = _plain_transformers
    server.stdin.write(json.dumps(script) + "\n")
    server.stdin.flush()
    ready, _, _ = select.select([server.stdout], [], [], timeout)
    line = server.stdout.readline() if ready else ""
    if not line:
        server.kill()
        server.stderr_file.seek(0)
        raise AssertionError(
            f"the plain transformers process gave no answer in {timeout} s:\n{server.stderr_file.read()[-3000:]}"
        )
    answer = json.loads(line)
    if answer["error"] is not None and "the script imported hfssl" in answer["error"]:
        server.kill()
        _plain_transformers = None
    assert answer["error"] is None, answer["error"][-4000:]
    return answer["stdout"]


def assert_save_load_round_trip(model, directory: pathlib.Path):
    """``model.save_pretrained(directory)``, then ``AutoModel.from_pretrained(directory)`` is the same class with the
    same state dict, bit for bit (teachers, queues and other buffers included). Returns the restored model."""
    import torch
    from transformers import AutoModel

    model.save_pretrained(directory)
    restored = AutoModel.from_pretrained(directory)
    assert type(restored) is type(model)
    expected = model.state_dict()
    assert restored.state_dict().keys() == expected.keys()
    for key, value in restored.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    return restored


def assert_backbones_load_without_hfssl(backbones: dict, tmp_path: pathlib.Path, weight: str, class_name: str):
    """Each exported folder ``tmp_path / name`` of ``backbones`` (name -> the module it was exported from) loads
    with plain transformers ``AutoModel`` in a process that never imports hfssl (:func:`run_without_hfssl`), as a
    ``class_name``, with its ``weight`` tensor equal to the module's (the expected values travel as safetensors)."""
    from safetensors.torch import save_file

    expected = tmp_path / "expected_backbone_weights.safetensors"
    save_file({name: module.state_dict()[weight].contiguous() for name, module in backbones.items()}, expected)
    script = f"""
import sys, torch
from safetensors.torch import load_file
from transformers import AutoModel
expected = load_file(r"{expected}")
for folder, value in expected.items():
    model = AutoModel.from_pretrained(r"{tmp_path}" + "/" + folder)
    assert type(model).__name__ == "{class_name}", type(model)
    assert torch.equal(model.state_dict()["{weight}"], value), folder
assert "hfssl" not in sys.modules
print("ok")
"""
    assert "ok" in run_without_hfssl(script)


# 2-process runs of the recipes that test modules register at import (pytest imports every collected module before
# the first test runs), made one after another in the same two processes of a single ``accelerate launch``: a
# launch's start (the launcher, then torch, transformers and hfssl imported by each process) costs ~12 s on 2
# cores, more than a small run's work. The launch starts in the background with the session's first test, so its
# processes use the core that the in-process tests (one torch thread) leave free; ``two_process_runs`` waits for it.
TWO_PROCESS_RUNS: dict = {}  # name -> (recipe, arguments, the registering module)
_SELECTED_MODULES: set | None = None  # the modules of the selected tests that use two_process_runs
_TWO_PROCESS_LAUNCH: dict = {}  # the background launch: process, outputs, log files
TWO_PROCESS_DRIVER = """
import json, runpy, sys
for recipe, arguments in json.load(open(sys.argv[1])):
    sys.argv = [recipe, *arguments]
    runpy.run_path(recipe, run_name="__main__")  # as `accelerate launch recipes/<recipe> <arguments>` runs it
"""


def register_two_process_run(name: str, recipe: str, arguments) -> None:
    """Register a 2-process run of ``recipes/<recipe>``; ``arguments(shared_data, output_dir)`` gives its command
    line. The ``two_process_runs`` fixture maps ``name`` to the run's ``output_dir``; the runs made are those of the
    modules whose selected tests use it."""
    import sys

    module = sys._getframe(1).f_globals["__name__"]
    if TWO_PROCESS_RUNS.get(name, (recipe, arguments, module))[2] != module:
        raise ValueError(f"two 2-process runs named {name!r}")
    TWO_PROCESS_RUNS[name] = (recipe, arguments, module)


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(items):
    global _SELECTED_MODULES
    _SELECTED_MODULES = {
        item.module.__name__ for item in items if "two_process_runs" in getattr(item, "fixturenames", ())
    }


@pytest.fixture(scope="session", autouse=True)
def _two_process_launch(request, tmp_path_factory):
    """Start the launch of the selected tests' 2-process runs in the background (nothing when there are none);
    stop it at the end of the session if it is still running."""
    import json
    import signal
    import subprocess
    import sys

    selected = {
        name: (recipe, arguments)
        for name, (recipe, arguments, module) in TWO_PROCESS_RUNS.items()
        if _SELECTED_MODULES is None or module in _SELECTED_MODULES
    }
    if not selected:
        yield
        return
    shared = request.getfixturevalue("shared_data")
    folder = tmp_path_factory.mktemp("two_process_runs")
    outputs = {name: folder / name for name in selected}
    runs = [
        [str(REPO_ROOT / "recipes" / recipe), [str(argument) for argument in arguments(shared, outputs[name])]]
        for name, (recipe, arguments) in selected.items()
    ]
    (folder / "runs.json").write_text(json.dumps(runs))
    (folder / "driver.py").write_text(TWO_PROCESS_DRIVER)
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO_ROOT / "accelerate_config.yaml"),
        "--num_processes", "2", str(folder / "driver.py"), str(folder / "runs.json"),
    ]  # fmt: skip
    with open(folder / "stdout.txt", "w") as stdout, open(folder / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(
            command, stdout=stdout, stderr=stderr, cwd=folder, env={**os.environ, "OMP_NUM_THREADS": "1"},
            start_new_session=True,  # its own process group: the workers are stopped with the launcher
        )  # fmt: skip
    _TWO_PROCESS_LAUNCH.update(process=process, outputs=outputs, folder=folder, timeout=240 + 120 * len(runs))
    yield
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="session")
def two_process_runs(_two_process_launch) -> dict[str, pathlib.Path]:
    """The registered 2-process runs of the selected tests' modules, made in one ``accelerate launch`` (gloo, one
    thread per process) of a driver that runs the recipes in turn as scripts; returns name -> output_dir once the
    launch has finished. One failing run fails them all, with its traceback."""
    import subprocess

    launch = _TWO_PROCESS_LAUNCH
    try:
        launch["process"].wait(timeout=launch["timeout"])
    except subprocess.TimeoutExpired:
        pytest.fail(f"the 2-process runs did not finish within {launch['timeout']} s")
    stderr = (launch["folder"] / "stderr.txt").read_text()
    assert launch["process"].returncode == 0, stderr[-4000:]
    return launch["outputs"]


# ---- short SSLTrainer runs of the method tests (EMA, queue, centre, resume) ----------------------------
# One optimizer step is 8 rows; plain SGD at a constant rate, so a hand loop can follow every update.
SHORT_RUN = dict(
    per_device_train_batch_size=8, learning_rate=0.05, max_steps=5, logging_steps=1, save_strategy="no",
    report_to="none", seed=3, use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
    lr_scheduler_type="constant", optim="sgd", weight_decay=0.0,
)  # fmt: skip


def short_run_arguments(output_dir, **overrides):
    """:class:`hfssl.training.SSLTrainingArguments` of :data:`SHORT_RUN` in ``output_dir``, with ``overrides``."""
    from hfssl.training import SSLTrainingArguments

    return SSLTrainingArguments(**{**SHORT_RUN, "output_dir": str(output_dir), **overrides})


def random_image_rows(count: int = 48, size: int = 10, channels: int = 1):
    """A ``datasets.Dataset`` of ``count`` random uint8 images (``pixel_values``: (channels, size, size)), seed 0."""
    import datasets
    import torch

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, channels, size, size), generator=generator, dtype=torch.uint8)
    return datasets.Dataset.from_dict({"pixel_values": images.tolist()})


def collate_pixels(rows) -> dict:
    """Rows of :func:`random_image_rows` -> ``{"pixel_values": uint8 (B, C, H, W)}``."""
    import torch

    return {"pixel_values": torch.tensor([row["pixel_values"] for row in rows], dtype=torch.uint8)}


def stop_after(step: int):
    """A Trainer callback that stops training once ``step`` optimizer steps are done (a job killed after its
    checkpoint at that step)."""
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= step:
                control.should_training_stop = True

    return StopAfter()


# ---- 2 processes (gloo) against 1 on the concatenated batch ------------------------------------------
WORLD = 2


def free_port() -> int:
    """A free TCP port on the loopback address, for a process group's rendezvous."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_processes(worker, args, timeout: float = 120.0) -> None:
    """``worker(rank, *args)`` in :data:`WORLD` spawned processes, with a deadline: a process that hangs (a collective
    waiting for a peer that has gone) fails the test instead of hanging the suite."""
    import time

    import torch.multiprocessing as mp

    context = mp.start_processes(worker, args=args, nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{worker.__name__} did not finish within {timeout:.0f} s")


def init_gloo(rank: int, port: int) -> None:
    """Join the :data:`WORLD`-process gloo group at ``port`` as ``rank`` (inside a :func:`spawn_processes` worker)."""
    import datetime

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60))
