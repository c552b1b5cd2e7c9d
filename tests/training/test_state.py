"""Never lose work: exact resume, accumulation, interruption, corrupt checkpoints, non-finite losses, DDP."""
import contextlib
import datetime
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tests.helpers.runs import small_config, small_corpus
from transformer_mt.data.batching import collate
from transformer_mt.errors import StoppedByRank0, UserError
from transformer_mt.model import checkpoint as checkpoint_module
from transformer_mt.run_folder import open_run
from transformer_mt.training import setup as run_setup_module
from transformer_mt.training import step as step_module
from transformer_mt.training.distributed import Distributed
from transformer_mt.training.loop import Trainer
from transformer_mt.training.setup import set_up_run, set_up_run_on_every_rank

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return small_corpus(tmp_path_factory.mktemp("corpus") / "c.jsonl")


def train(config, distributed=None):
    trainer = Trainer(config, set_up_run(config, log=lambda *_: None), distributed)
    trainer.fit()
    return trainer


@pytest.mark.parametrize("shapes", [{}, {"length_multiple": 4, "row_multiple": 8}], ids=["exact", "rounded"])
def test_resume_continues_exactly(tmp_path, corpus, shapes):
    straight = train(small_config(tmp_path, corpus, "straight", max_steps=26, batch_tokens=1200, **shapes))
    first = small_config(tmp_path, corpus, "halves", max_steps=13, batch_tokens=1200, **shapes)
    stopped = train(first).state
    assert stopped.position > 0  # stopped mid-epoch: resume must find its place inside the epoch
    second = train(replace(first, train=replace(first.train, max_steps=26, resume=True)))
    assert straight.state.epoch >= 2  # and the run crosses epoch boundaries
    assert second.updater.optimizer.param_groups[0]["fused"]  # the fused Adam survives the reload of its state
    assert second.state.step == 26
    for (name, a), b in zip(straight.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_resume_reads_the_checkpoint_into_cpu_memory_whatever_the_training_device(tmp_path, corpus, monkeypatch):
    """Loaded to the training device, a GPU run's RNG states would land on the GPU, where
    torch.set_rng_state and torch.cuda.set_rng_state refuse them (every resume on CUDA failed), and a
    second copy of the weights and Adam state would be staged there: the resume path asks torch.load
    for CPU memory (the string "cpu", not the trainer's device) and lets load_state_dict move tensors."""
    first = small_config(tmp_path, corpus, "cpu-load", max_steps=4)
    train(first)
    asked, real_load = [], torch.load
    monkeypatch.setattr(checkpoint_module.torch, "load",
                        lambda *args, **kwargs: asked.append(kwargs.get("map_location")) or real_load(*args, **kwargs))
    resumed = train(replace(first, train=replace(first.train, max_steps=6, resume=True)))
    assert resumed.state.step == 6 and asked and all(isinstance(m, str) and m == "cpu" for m in asked), asked


def test_rng_states_are_restored_from_tensors_of_any_dtype_or_device(tmp_path):
    """What set_rng_state is handed is made a CPU byte tensor first (the form both setters accept)."""
    from transformer_mt.training.state import rng_state, set_rng_state

    saved = rng_state(torch.device("cpu"))
    expected = torch.rand(3)
    set_rng_state({**saved, "torch": saved["torch"].to(torch.int16)}, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)


def gradient_of_one_update(config, *micro_indices: torch.Tensor) -> torch.Tensor:
    """The gradient the optimiser receives (after clipping) in a fresh trainer's first update over these
    micro-batches, read by an optimiser pre-step hook."""
    trainer = Trainer(config, set_up_run(config, log=lambda *_: None))
    trainer.model.eval()  # no dropout: every update sees the same function
    params, captured = list(trainer.model.parameters()), []
    trainer.updater.optimizer.register_step_pre_hook(
        lambda *_: captured.append(torch.cat([p.grad.flatten() for p in params])))
    trainer.updater.update([collate(trainer.prepared.train_ids, indices) for indices in micro_indices])
    return captured[0]


def test_gradient_accumulation_matches_one_big_batch(tmp_path, corpus):
    config = small_config(tmp_path, corpus, "accumulate")
    half_a, half_b = torch.arange(0, 6), torch.arange(6, 14)
    one = gradient_of_one_update(config, torch.cat([half_a, half_b]))
    two = gradient_of_one_update(config, half_a, half_b)  # the same initial weights: the same seed
    torch.testing.assert_close(one, two, atol=1e-6, rtol=1e-5)


def test_clip_norm_rescales_the_gradient_and_zero_turns_clipping_off(tmp_path, corpus):
    grads = {clip: gradient_of_one_update(small_config(tmp_path, corpus, f"clip{clip}", clip_norm=clip),
                                          torch.arange(8))
             for clip in (0.0, 1e-3)}
    raw = grads[0.0]
    assert raw.norm() > 0.1  # unclipped: far above the other run's threshold
    torch.testing.assert_close(grads[1e-3], raw * (1e-3 / raw.norm()), rtol=1e-4, atol=1e-9)


def test_non_finite_loss_stops_or_skips(tmp_path, corpus, monkeypatch):
    real = step_module.smoothed_loss
    calls = {"n": 0}

    def poisoned(logits, target, smoothing):
        calls["n"] += 1
        loss, nll = real(logits, target, smoothing)
        return (loss * float("nan"), nll) if calls["n"] == 8 else (loss, nll)

    monkeypatch.setattr(step_module, "smoothed_loss", poisoned)
    config = small_config(tmp_path, corpus, "nan", max_steps=12)
    with pytest.raises(UserError, match="non-finite loss or gradients.*at step 8.*last good checkpoint"):
        train(config)
    run = Path(config.run.root) / "nan"
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["state"]["step"] == 5 and all(torch.isfinite(v).all() for v in state["model"].values())
    calls["n"] = 0
    skipping = small_config(tmp_path, corpus, "skip", max_steps=12, nonfinite="skip")
    result = train(skipping)
    assert result.state.skipped_batches == 1 and result.state.step == 12


def test_corrupt_last_checkpoint_falls_back_to_an_older_one(tmp_path, corpus, capsys):
    config = small_config(tmp_path, corpus, "corrupt", max_steps=10)
    train(config)
    run = Path(config.run.root) / "corrupt" / "checkpoints"
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:2000])
    resumed = train(replace(config, train=replace(config.train, max_steps=12, resume=True)))
    assert "last.pt is corrupt or truncated" in capsys.readouterr().out
    assert resumed.state.step == 12


def test_adamw_run_resumes_as_adamw_and_a_changed_optimizer_is_refused(tmp_path, corpus):
    config = small_config(tmp_path, corpus, "adamw", max_steps=5, optimizer="adamw", weight_decay=0.1)
    assert isinstance(train(config).updater.optimizer, torch.optim.AdamW)
    resumed = train(replace(config, train=replace(config.train, max_steps=7, resume=True)))
    assert resumed.state.step == 7 and resumed.updater.optimizer.param_groups[0]["decoupled_weight_decay"]
    switched = replace(config, train=replace(config.train, max_steps=9, resume=True, optimizer="adam"))
    with pytest.raises(UserError, match="trained with train.optimizer=adamw, this config says adam"):
        set_up_run(switched, log=lambda *_: None)


def test_checkpoints_are_plain_data_and_rotated(tmp_path, corpus):
    config = small_config(tmp_path, corpus, "rotate", max_steps=20, keep_last=2)
    train(config)
    checkpoints = Path(config.run.root) / "rotate" / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("step-*.pt")) == ["step-00000015.pt", "step-00000020.pt"]
    state = torch.load(checkpoints / "best.pt", weights_only=True)  # no pickled objects
    assert isinstance(state["config"], dict) and state["config"]["model"]["d_model"] == 32
    assert not (checkpoints / "best.pt").is_symlink()


def test_ctrl_c_saves_and_exits_cleanly_then_resumes(tmp_path, corpus):
    import yaml

    config = small_config(tmp_path, corpus, "interrupt", max_steps=100000, log_every=1)
    path = tmp_path / "interrupt.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "scripts/train.py", str(path)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = Path(config.run.root) / "interrupt" / "checkpoints" / "step-00000010.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output[-2000:]
    assert "resume with" in output and "Traceback" not in output
    state = torch.load(checkpoint.parent / "last.pt", weights_only=True)
    stopped_at = state["state"]["step"]
    assert stopped_at >= 10
    again = subprocess.run([sys.executable, "scripts/train.py", str(path), "train.resume=true",
                            f"train.max_steps={stopped_at + 3}"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert torch.load(checkpoint.parent / "last.pt", weights_only=True)["state"]["step"] == stopped_at + 3


@contextlib.contextmanager
def _gloo_rank(rank: int, world_size: int, port: int, timeout: float | None = None):
    """This spawned process as one CPU rank of a gloo process group, as torchrun would set it up."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    options = {"timeout": datetime.timedelta(seconds=timeout)} if timeout else {}
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size, **options)
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


def _ddp_worker(rank: int, world_size: int, config, port: int, out: str) -> None:
    with _gloo_rank(rank, world_size, port):
        prepared = set_up_run_on_every_rank(config, rank, world_size)  # as scripts/train.py does
        trainer = Trainer(config, prepared, Distributed(rank, world_size))
        trainer.fit()
        torch.save(trainer.model.state_dict(), f"{out}/rank{rank}.pt")


def _slow_preparation_worker(rank: int, world_size: int, config, port: int, out: str) -> None:
    """Rank 0 prepares for longer than the process group's collective timeout (5 s: short, but above
    what rank 0's validation may take on a loaded machine while rank 1 waits in the save's collective)."""
    from transformer_mt.data import preparation

    real = preparation.prepare_corpus

    def slow(*args, **kwargs):
        time.sleep(12)
        return real(*args, **kwargs)

    preparation.prepare_corpus = slow
    run_setup_module.prepare_corpus = slow
    with _gloo_rank(rank, world_size, port, timeout=5):
        prepared = set_up_run_on_every_rank(config, rank, world_size, poll_seconds=0.1)
        Trainer(config, prepared, Distributed(rank, world_size)).fit()
        Path(out, f"rank{rank}.txt").write_text(str(Path(prepared.train_ids.src_ids.filename).resolve()))


def test_ddp_ranks_wait_for_a_long_preparation_outside_any_collective_and_share_its_files(tmp_path, corpus):
    config = small_config(tmp_path, corpus, "slow", dropout=0.0, max_steps=2)
    mp.start_processes(_slow_preparation_worker, args=(2, config, 31500 + os.getpid() % 1000, str(tmp_path)),
                       nprocs=2, start_method="spawn")
    mapped = {(tmp_path / f"rank{rank}.txt").read_text() for rank in (0, 1)}
    assert mapped == {str((Path(config.run.root) / "slow" / "data" / "train" / "src.ids").resolve())}


def test_a_resumed_run_whose_store_was_deleted_encodes_it_again_with_its_own_tokenizers(tmp_path, corpus):
    config = small_config(tmp_path, corpus, "rebuilt", max_steps=5)
    first = train(config)
    store = Path(config.run.root) / "rebuilt" / "data" / "train"
    shutil.rmtree(store)
    resumed = train(replace(config, train=replace(config.train, max_steps=7, resume=True)))
    assert resumed.state.step == 7 and resumed.prepared.corpus_key == first.prepared.corpus_key


def test_resuming_against_another_prepared_corpus_is_refused(tmp_path, corpus):
    config = small_config(tmp_path, corpus, "corpus_key", max_steps=5)
    train(config)
    manifest = Path(config.run.root) / "corpus_key" / "data" / "train" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"key": "', '"key": "another-'))
    with pytest.raises(UserError, match="its checkpoints were trained on another prepared corpus"):
        train(replace(config, train=replace(config.train, max_steps=7, resume=True)))


def test_ddp_two_cpu_ranks_match_single_process_on_the_same_global_batch(tmp_path, corpus):
    ddp = small_config(tmp_path, corpus, "ddp", dropout=0.0, max_steps=6)
    mp.start_processes(_ddp_worker, args=(2, ddp, 29500 + os.getpid() % 1000, str(tmp_path)), nprocs=2,
                       start_method="spawn")
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # one process, two accumulated micro-batches = the two ranks' batches of each step
    single = train(small_config(tmp_path, corpus, "single", dropout=0.0, max_steps=6, accumulate=2)).model.state_dict()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
        torch.testing.assert_close(rank0[name], single[name], atol=2e-5, rtol=1e-4)


def test_bad_input_under_torchrun_is_reported_once_by_rank_0(tmp_path):
    missing = tmp_path / "missing.tsv"
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "scripts/train.py", "configs/tiny.yaml", f"run.root={tmp_path}", "data.source=files",
                             f"data.files=[{missing}]"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert output.count(f"error: corpus file not found: {missing}") == 1
    assert "[rank1]" not in output and "Connection reset" not in output  # rank 1 left quietly, no traceback


def test_torchrun_with_one_process_trains_in_ddp_over_gloo_and_resumes(tmp_path):
    """torchrun --nproc_per_node=1 makes a real process group of one: DDP, gloo's all-reduces and the
    gathered per-rank generator states run as with more processes; the run then resumes under it."""
    def torchrun(*overrides):
        return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                               "scripts/train.py", "configs/tiny.yaml", f"run.root={tmp_path}", "train.device=cpu",
                               "train.valid_every=4", *overrides],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)

    result = torchrun("train.max_steps=4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data-parallel: DistributedDataParallel over 1 process(es), gloo backend" in result.stdout + result.stderr
    state = torch.load(tmp_path / "tiny" / "checkpoints" / "last.pt", weights_only=True)
    assert state["state"]["step"] == 4 and isinstance(state["rng"], list) and len(state["rng"]) == 1
    again = torchrun("train.max_steps=6", "train.resume=true")
    assert again.returncode == 0, again.stderr[-3000:]
    assert torch.load(tmp_path / "tiny" / "checkpoints" / "last.pt", weights_only=True)["state"]["step"] == 6


def _disk_full_on_the_second_call(real):
    calls = {"n": 0}

    def save_atomic(state, path):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real(state, path)

    return save_atomic


def _non_finite_on_the_third_call(real):
    calls = {"n": 0}

    def clip_grad_norm_(*args, **kwargs):
        calls["n"] += 1
        norm = real(*args, **kwargs)
        return torch.full_like(norm, math.inf) if calls["n"] == 3 else norm

    return clip_grad_norm_


def _ddp_failing_worker(rank: int, world_size: int, config, failure: str, port: int, out: str) -> None:
    """One rank of a 2-process run in which rank 0 cannot write its step-10 checkpoint ("disk_full"),
    or every rank sees non-finite gradients at step 3 ("non_finite"); writes how this rank ended."""
    if failure == "disk_full" and rank == 0:
        checkpoint_module.save_atomic = _disk_full_on_the_second_call(checkpoint_module.save_atomic)
    if failure == "non_finite":
        torch.nn.utils.clip_grad_norm_ = _non_finite_on_the_third_call(torch.nn.utils.clip_grad_norm_)
    with _gloo_rank(rank, world_size, port):
        try:
            Trainer(config, set_up_run_on_every_rank(config, rank, world_size), Distributed(rank, world_size)).fit()
            ended = "finished"
        except UserError as err:
            ended = f"error: {err}"
        except StoppedByRank0:
            ended = "stopped by rank 0"
    Path(out, f"rank{rank}.txt").write_text(ended)


@pytest.mark.parametrize("failure, message", [
    ("disk_full", "cannot write the step-10 checkpoint"),
    ("non_finite", "non-finite loss or gradients"),
])
def test_when_rank_0_stops_on_an_error_the_other_ranks_stop_with_it_quietly(tmp_path, corpus, failure, message):
    """Not dying in their next collective with a 'connection reset' traceback, nor repeating the message."""
    config = small_config(tmp_path, corpus, failure, dropout=0.0, max_steps=12, checkpoint_every=5)
    mp.start_processes(_ddp_failing_worker, args=(2, config, failure, 30500 + os.getpid() % 1000, str(tmp_path)),
                       nprocs=2, start_method="spawn")
    assert (tmp_path / "rank0.txt").read_text().startswith(f"error: {message}")
    assert (tmp_path / "rank1.txt").read_text() == "stopped by rank 0"


def test_a_checkpoint_that_cannot_be_written_stops_with_one_line_and_keeps_the_earlier_ones(tmp_path, corpus,
                                                                                              monkeypatch):
    real = checkpoint_module.save_atomic
    monkeypatch.setattr(checkpoint_module, "save_atomic", _disk_full_on_the_second_call(real))
    config = small_config(tmp_path, corpus, "full", max_steps=12, checkpoint_every=5)
    with pytest.raises(UserError, match=r"^cannot write the step-10 checkpoint in .* \(No space left on device\); "
                                        r"the checkpoints already there are intact"):
        train(config)
    checkpoints = Path(config.run.root) / "full" / "checkpoints"
    assert torch.load(checkpoints / "last.pt", weights_only=True)["state"]["step"] == 5
    monkeypatch.setattr(checkpoint_module, "save_atomic", real)
    resumed = train(replace(config, train=replace(config.train, resume=True)))
    assert resumed.state.step == 12


def test_average_checkpoints_is_the_mean_and_translates(tmp_path, corpus):
    from transformer_mt.decoding.pytorch import Translator
    from transformer_mt.model.averaging import average_checkpoints

    config = small_config(tmp_path, corpus, "average", max_steps=15, keep_last=3)
    train(config)
    run = Path(config.run.root) / "average"
    paths = sorted((run / "checkpoints").glob("step-*.pt"))
    result = subprocess.run([sys.executable, "scripts/average_checkpoints.py", "--run", str(run), "--last", "3"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    states = [torch.load(p, weights_only=True)["model"] for p in paths]
    averaged = torch.load(run / "checkpoints" / "averaged.pt", weights_only=True)
    key = "encoder.0.ffn.0.weight"
    torch.testing.assert_close(averaged["model"][key], sum(s[key] for s in states) / 3)
    assert average_checkpoints(paths)["averaged_from"] == [str(p) for p in paths]
    translator = Translator(open_run(run), run / "checkpoints" / "averaged.pt")
    assert len(translator.translate(["Hello."], replace(translator.decode, beam_size=2))) == 1
    too_many = subprocess.run([sys.executable, "scripts/average_checkpoints.py", "--run", str(run), "--last", "9"],
                              cwd=ROOT, capture_output=True, text=True)
    assert too_many.returncode == 2 and "fewer than --last 9" in too_many.stderr
    none = subprocess.run([sys.executable, "scripts/average_checkpoints.py", "--run", str(run), "--last", "0"],
                          cwd=ROOT, capture_output=True, text=True)
    assert none.returncode == 2 and none.stderr.strip() == "error: --last must be at least 1, got 0"
    again = subprocess.run([sys.executable, "scripts/average_checkpoints.py", "--run", str(run), "--last", "2"],
                           cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr  # an earlier average may be replaced...
    last = (run / "checkpoints" / "last.pt").read_bytes()
    for output, message in ((run / "checkpoints" / "last.pt", "exists and is not an averaged checkpoint"),
                            (run / "config.yaml", "exists and is not an averaged checkpoint"),
                            (run / "checkpoints", "is a folder"),
                            (run / "missing" / "averaged.pt", "missing does not exist")):
        refused = subprocess.run([sys.executable, "scripts/average_checkpoints.py", "--run", str(run), "--last", "2",
                                  "--output", str(output)], cwd=ROOT, capture_output=True, text=True)
        assert refused.returncode == 2 and refused.stderr.startswith(f"error: --output {output}")
        assert message in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert (run / "checkpoints" / "last.pt").read_bytes() == last  # ...never the run's training state
    assert not list(run.rglob(".*.tmp"))


def test_compiled_training_on_cpu_saves_plain_weights(tmp_path, corpus):
    config = small_config(tmp_path, corpus, "compiled", max_steps=3, compile=True, checkpoint_every=3)
    trained = train(config)
    state = torch.load(Path(config.run.root) / "compiled" / "checkpoints" / "last.pt", weights_only=True)
    assert state["state"]["step"] == 3
    assert not any(key.startswith("_orig_mod") for key in state["model"])
    assert all(torch.isfinite(p).all() for p in trained.model.parameters())


def test_early_stopping_on_validation_bleu(tmp_path, corpus):
    # A model this small stays at BLEU 0: the first validation is the best, the next is not better.
    config = small_config(tmp_path, corpus, "patience", max_steps=100, valid_every=5, patience=1)
    result = train(config)
    assert result.state.step == 10 and result.state.stale_validations == 1
