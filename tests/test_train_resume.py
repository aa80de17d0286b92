"""A training run killed (SIGKILL) mid-way resumes from its last Orbax checkpoint and, with the same seeds,
ends with the same parameters as an uninterrupted run."""
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import ROOT, blobs, recipe

from poisongate.learning import models
from poisongate.learning.training import train_model

CFG = recipe(hidden=[16], epochs=60, batch_size=32, learning_rate=0.01, weight_decay=1e-4)

TRAIN = """
import sys
import numpy as np
from poisongate.config import Recipe
from poisongate.learning import models
from poisongate.learning.training import train_model
data = np.load(sys.argv[1], allow_pickle=False)
cfg = Recipe.model_validate_json(sys.argv[2])
train_model(data["X"], data["y"], models.model_spec(cfg, data["X"], (0, 1, 2)), cfg, checkpoint_dir=sys.argv[3],
            checkpoint_every=1)
"""


def latest_step(directory):
    if not directory.exists():
        return None
    try:
        with ocp.CheckpointManager(directory.resolve()) as mngr:
            return mngr.latest_step()
    except FileNotFoundError:  # the training process rotated a step out (max_to_keep) while we listed them
        return None


@pytest.mark.slow  # about 40 s on 2 shared cores: a subprocess compiles, trains, is killed; then two more runs
def test_killed_run_resumes_to_the_same_parameters(tmp_path):
    X, y = blobs(n_per_class=30)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, "-c", TRAIN, str(tmp_path / "data.npz"), CFG.model_dump_json(), str(ckpt)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while (latest_step(ckpt) or 0) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "training ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    killed_at = latest_step(ckpt)
    assert 3 <= killed_at < CFG.epochs

    spec = models.model_spec(CFG, X, (0, 1, 2))
    resumed = train_model(X, y, spec, CFG, checkpoint_dir=ckpt, checkpoint_every=1000)
    uninterrupted = train_model(X, y, spec, CFG)
    for a, b in zip(jax.tree.leaves((resumed.params, resumed.opt_state)),
                    jax.tree.leaves((uninterrupted.params, uninterrupted.opt_state))):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.array_equal(resumed.losses, uninterrupted.losses)  # the curve before the kill came back too
    assert latest_step(ckpt) == CFG.epochs


def test_checkpoint_of_other_data_is_not_resumed(tmp_path):
    X, y = blobs(n_per_class=30)
    cfg = recipe(CFG, epochs=2)
    spec = models.model_spec(cfg, X, (0, 1, 2))
    train_model(X, y, spec, cfg, checkpoint_dir=tmp_path, checkpoint_every=1)
    other = train_model(X[::-1].copy(), y[::-1].copy(), spec, cfg, checkpoint_dir=tmp_path, checkpoint_every=1)
    assert other.losses.shape[0] == 2
    fresh = train_model(X[::-1].copy(), y[::-1].copy(), spec, cfg)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(other.params), jax.tree.leaves(fresh.params)))
