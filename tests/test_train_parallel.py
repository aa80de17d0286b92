"""Data-parallel training over 8 simulated CPU devices matches single-device training.

The 8-device run is a subprocess: XLA_FLAGS must be set before JAX starts, and STACK_NOTES.md's rendezvous
abort on 2 cores is kept out of the test process."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import ROOT, blobs, recipe

from poisongate.learning import models
from poisongate.learning.training import fit

CFG = recipe(hidden=[16], epochs=3, batch_size=32, learning_rate=0.01, weight_decay=1e-4, trim_fraction=0.1)

TRAIN_ON_8 = """
import json, sys
import jax, numpy as np
from poisongate.config import Recipe
from poisongate.learning import models
from poisongate.learning.training import data_sharding, fit
data = np.load(sys.argv[1], allow_pickle=False)
cfg = Recipe.model_validate_json(sys.argv[2])
spec = models.model_spec(cfg, data["X"], (0, 1, 2))
single = fit(data["X"], data["y"], spec, cfg)[1]
folds = fit(data["X"], data["y"], spec, cfg, data["W"])[1]
leaves = jax.tree.leaves(single) + jax.tree.leaves(folds)
np.savez(sys.argv[3], *[np.asarray(a) for a in leaves])
print(json.dumps({"devices": jax.device_count(), "mesh": data_sharding().mesh.size}))
"""


@pytest.mark.slow  # about 50 s on 2 shared cores: two JAX compilations on 8 simulated devices
def test_eight_devices_match_one(tmp_path):
    X, y = blobs(n_per_class=30)
    W = np.stack([np.arange(len(X)) % 3 != k for k in range(3)]).astype(np.float32)
    np.savez(tmp_path / "data.npz", X=X, y=y, W=W)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", TRAIN_ON_8, str(tmp_path / "data.npz"), CFG.model_dump_json(),
                           str(tmp_path / "out.npz")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"devices": 8, "mesh": 8}

    assert jax.device_count() == 1
    spec = models.model_spec(CFG, X, (0, 1, 2))
    leaves = jax.tree.leaves(fit(X, y, spec, CFG)[1]) + jax.tree.leaves(fit(X, y, spec, CFG, W)[1])
    sharded = np.load(tmp_path / "out.npz", allow_pickle=False)
    assert len(sharded.files) == len(leaves)
    for i, leaf in enumerate(leaves):
        assert np.allclose(sharded[f"arr_{i}"], np.asarray(leaf), rtol=1e-4, atol=1e-5)
