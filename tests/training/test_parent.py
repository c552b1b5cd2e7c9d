"""Fine-tuning from a run (train.init_from): the parent's weights, tokenizers and model settings, a fresh
optimiser and schedule unless kept, exact resume, DDP, lineage, and bad parents refused in one line."""
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.helpers.runs import small_config, small_corpus, write_jsonl
from transformer_mt.config import CorpusConfig, load_config
from transformer_mt.model import checkpoint
from transformer_mt.run_folder import RunPaths, lineage_markdown, read_lineage
from transformer_mt.training.loop import Trainer
from transformer_mt.training.parent import adopt, find_parent, tokenizer_fit, tokens_per_word
from transformer_mt.training.setup import load_start, set_up_run

ROOT = Path(__file__).resolve().parents[2]
WITHOUT_TORCH = str(ROOT / "tests" / "helpers" / "without_torch.py")
QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A tiny run trained 8 steps on the sample's first 400 pairs (best.pt and last.pt)."""
    root = tmp_path_factory.mktemp("parent")
    config = small_config(root, small_corpus(root / "parent.jsonl"), "parent", max_steps=8, checkpoint_every=4)
    Trainer(config, set_up_run(config, **QUIET)).fit()
    return RunPaths(root / "runs" / "parent")


@pytest.fixture(scope="module")
def domain(tmp_path_factory, sample_pairs):
    """Another corpus: pairs the parent never saw."""
    return write_jsonl(tmp_path_factory.mktemp("domain") / "domain.jsonl", sample_pairs[1000:1400])


def child_config(tmp_path, domain, parent, name="child", **train):
    config = small_config(tmp_path, domain, name, init_from=str(parent.root), **train)
    return adopt(config, given=set())


def trainer_for(config, parent_run):
    start = load_start(find_parent(str(parent_run.root)))
    return Trainer(config, set_up_run(config, start=start, **QUIET), start=start), start


def test_a_child_starts_from_the_parents_weights_and_tokenizers_with_everything_else_fresh(tmp_path, parent, domain):
    config, found = child_config(tmp_path, domain, parent)
    assert found.checkpoint == parent.best and config.model == load_config(parent.config).model
    trainer, start = trainer_for(config, parent)
    best = checkpoint.load(parent.best)
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(tensor, best["model"][name]), name
    child = trainer.prepared.run
    for mine, theirs in ((child.src_tokenizer, parent.src_tokenizer), (child.tgt_tokenizer, parent.tgt_tokenizer)):
        assert mine.read_bytes() == theirs.read_bytes()
    assert trainer.updater.optimizer.state == {} and trainer.updater.scheduler.last_epoch == 0
    assert trainer.state.step == 0 and trainer.state.best_bleu == -1.0
    lineage = read_lineage(child)
    assert lineage["checkpoint"] == str(parent.best.resolve()) and lineage["step"] == best["state"]["step"]
    assert lineage["sha256"] == __import__("hashlib").sha256(parent.best.read_bytes()).hexdigest()


def test_init_keep_carries_the_optimizer_the_schedule_and_the_best_score_with_this_runs_hyperparameters(
        tmp_path, parent, domain):
    config, _ = child_config(tmp_path, domain, parent, lr=0.0005, init_keep=["optimizer", "schedule", "best"])
    trainer, start = trainer_for(config, parent)
    saved = start.state
    moments = trainer.updater.optimizer.state_dict()["state"]
    for index, values in saved["optimizer"]["state"].items():
        for key, value in values.items():
            assert torch.equal(moments[index][key], value), (index, key)
    assert trainer.updater.scheduler.last_epoch == saved["scheduler"]["last_epoch"]
    assert trainer.state.best_bleu == saved["state"]["best_bleu"] and trainer.state.step == 0
    assert all(group["initial_lr"] == 0.0005 for group in trainer.updater.optimizer.param_groups)


def test_a_child_resumes_exactly(tmp_path, parent, domain):
    straight, _ = child_config(tmp_path, domain, parent, "straight", max_steps=8, batch_tokens=600)
    whole, _ = trainer_for(straight, parent)
    whole.fit()
    first, _ = child_config(tmp_path, domain, parent, "halves", max_steps=4, batch_tokens=600)
    trainer_for(first, parent)[0].fit()
    second = replace(first, train=replace(first.train, max_steps=8, resume=True))
    second, found = adopt(second, given=set())
    assert found is None  # resuming: the child's own folder says what it is, the parent is not read again
    resumed = Trainer(second, set_up_run(second, **QUIET))
    resumed.fit()
    assert resumed.state.step == 8
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def mixed_child(tmp_path, domain, parent, name, **train):
    """Mixed fine-tuning: the new domain three parts in four, the parent's own corpus one."""
    config, _ = child_config(tmp_path, domain, parent, name, **train)
    general = load_config(parent.config).data.files[0]
    corpora = [CorpusConfig(files=[str(domain)], weight=3, name="domain"),
               CorpusConfig(files=[general], name="general")]
    return replace(config, data=replace(config.data, source="hub", files=[], corpora=corpora))


def test_mixed_fine_tuning_resumes_exactly_and_validates_each_corpus(tmp_path, parent, domain):
    straight = mixed_child(tmp_path, domain, parent, "mixed-straight", max_steps=10, valid_every=5,
                           batch_tokens=4000)
    whole, _ = trainer_for(straight, parent)
    whole.fit()
    assert whole.prepared.mixture.weights == (3.0, 1.0) and whole.state.epoch >= 1  # crosses an epoch
    first = mixed_child(tmp_path, domain, parent, "mixed-halves", max_steps=5, valid_every=5, batch_tokens=4000)
    trainer_for(first, parent)[0].fit()
    second = replace(first, train=replace(first.train, max_steps=10, resume=True))
    resumed = Trainer(second, set_up_run(second, **QUIET))
    resumed.fit()
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(whole.prepared.run.root)).Reload().Tags()["scalars"]
    assert {"valid/bleu", "valid/bleu/domain", "valid/chrf/domain", "valid/bleu/general"} <= set(tags)


def test_lineage_chains_through_a_grandchild(tmp_path, parent, domain):
    config, _ = child_config(tmp_path, domain, parent, max_steps=2)
    trainer_for(config, parent)[0].fit()
    child = RunPaths(Path(config.run.root) / "child")
    grandchild, _ = child_config(tmp_path, domain, child, "grandchild", max_steps=2)
    trainer_for(grandchild, child)[0].fit()
    lineage = read_lineage(RunPaths(Path(config.run.root) / "grandchild"))
    assert lineage["run"] == str(child.root.resolve()) and lineage["parent"]["run"] == str(parent.root.resolve())
    assert lineage["parent"]["parent"] is None and len(lineage_markdown(lineage).splitlines()) == 2
    from transformer_mt.export.model_card import model_card
    from transformer_mt.model.checkpoint import Trained

    card = str(model_card(Trained.load(RunPaths(Path(config.run.root) / "grandchild")), "MarianMTModel", True, None,
                          1.0))
    assert "## Lineage" in card and str(parent.best.resolve()) in card and str(child.best.resolve()) in card


def test_the_fit_of_the_parents_tokenizers_is_reported_and_a_bad_fit_warned(tmp_path, parent, domain):
    config, found = child_config(tmp_path, domain, parent)
    run = set_up_run(config, start=load_start(found), **QUIET)
    note = tokenizer_fit(found, run.run, run.tokenizers, config.data)
    assert note.startswith("the parent's tokenizers on this corpus: tokens per word en ") and "warning" not in note
    src, tgt = run.run.split_files("valid", "en", "fr")
    src.write_text("".join("Zqxjvkw bvxzqj wqzkxv.\n" for _ in range(20)), encoding="utf-8")
    tgt.write_text("".join("Xkqzvj wbzqxk vqxzjw.\n" for _ in range(20)), encoding="utf-8")
    assert "warning: they cut this corpus" in tokenizer_fit(found, run.run, run.tokenizers, config.data)
    assert tokens_per_word(run.tokenizers.src, ["a b", "c"]) == pytest.approx(
        sum(map(len, run.tokenizers.src.encode_batch(["a b", "c"]))) / 3)


@pytest.fixture(scope="module")
def tiny_parent(tmp_path_factory):
    """A parent trained from configs/tiny.yaml, whose explicit model section then agrees with it."""
    root = tmp_path_factory.mktemp("tiny")
    result = subprocess.run([sys.executable, "scripts/train.py", "configs/tiny.yaml", f"run.root={root}",
                             "run.name=tiny-parent", "train.max_steps=3"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return RunPaths(root / "tiny-parent")


def train(*overrides, root, without_torch=False, timeout=300):
    command = [WITHOUT_TORCH] if without_torch else []
    return subprocess.run([sys.executable, *command, "scripts/train.py", "configs/tiny.yaml", f"run.root={root}",
                           "run.name=bad", *overrides], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("overrides, message", [
    (["train.init_from=/no/such/run"], "train.init_from: /no/such/run is neither a run folder nor a checkpoint file"),
    (["train.init_keep=[optimizer]"], "train.init_keep: keeps parts of a parent: set train.init_from too"),
    (["train.init_from=PARENT", "model.d_model=48"], "model.d_model is 48 but the parent"),
    (["train.init_from=PARENT", "tokenizer.joint=false"], "tokenizer.joint is False but the parent"),
    (["train.init_from=PARENT", "train.init_keep=[moments]"], "'moments' is not one of optimizer, schedule, best"),
    (["train.init_from=CONFIG"], "is not in a run folder's checkpoints/"),
])
def test_a_bad_parent_is_one_line_before_pytorch_loads_and_nothing_is_written(tmp_path, tiny_parent, overrides,
                                                                              message):
    overrides = [o.replace("PARENT", str(tiny_parent.root)).replace("CONFIG", str(tiny_parent.config))
                 for o in overrides]
    result = train(*overrides, root=tmp_path, without_torch=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr and not (tmp_path / "bad").exists()


def test_a_damaged_parent_checkpoint_is_one_line_and_nothing_is_written(tmp_path, tiny_parent):
    parent = tiny_parent
    damaged = tmp_path / "damaged"
    (damaged / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "tokenizer-src.json", "tokenizer-tgt.json"):
        (damaged / name).write_bytes((parent.root / name).read_bytes())
    (damaged / "checkpoints" / "last.pt").write_bytes(parent.last.read_bytes()[:2000])
    result = train(f"train.init_from={damaged}", root=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"error: checkpoint {damaged}/checkpoints/last.pt is corrupt or truncated (RuntimeError)"]
    assert not (tmp_path / "bad").exists()


def test_ddp_with_two_gloo_processes_fine_tunes(tmp_path, tiny_parent):
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "scripts/train.py", "configs/tiny.yaml", f"run.root={tmp_path}", "run.name=ddp-child",
                             f"train.init_from={tiny_parent.root}", "train.max_steps=3", "train.device=cpu",
                             "train.num_threads=1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "fine-tuning from" in output and "DistributedDataParallel over 2 process(es), gloo backend" in output
    state = torch.load(tmp_path / "ddp-child" / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
    assert state["state"]["step"] == 3 and json.loads((tmp_path / "ddp-child" / "parent.json").read_text())["step"] == 3
