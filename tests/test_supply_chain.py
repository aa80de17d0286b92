"""Supply chain: installs come only from the locked, hashed uv.lock; user data is never unpickled; models are
only ever written and read through Orbax."""
import re
import tomllib

from conftest import ROOT

CODE = [p for d in ("poisongate", "tasks", "flows", "benchmarks") for p in (ROOT / d).rglob("*.py")]


def test_every_uv_command_in_ci_and_readme_is_locked():
    commands = [line for f in (".ci/run", "README.md") for line in (ROOT / f).read_text().splitlines()
                if re.search(r"\buv (run|sync|pip install)\b", line)]
    assert commands and all("--locked" in c or "--frozen" in c for c in commands), commands


def test_lockfile_pins_every_registry_package_by_hash():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    from_registry = [p for p in lock["package"] if "registry" in p.get("source", {})]
    assert len(from_registry) > 100
    for package in from_registry:
        files = package.get("wheels", []) + ([package["sdist"]] if "sdist" in package else [])
        assert files and all(f.get("hash", "").startswith("sha256:") for f in files), package["name"]


def test_no_pickle_on_user_data():
    for path in CODE:
        text = path.read_text()
        assert not re.search(r"\b(import pickle|cloudpickle|joblib|read_pickle|allow_pickle=True|torch\.load)\b",
                             text), path
        for line in text.splitlines():
            assert "np.load(" not in line or "allow_pickle=False" in line, (path, line)


def test_models_are_saved_and_loaded_only_through_orbax():
    model_io = [p for p in CODE if re.search(r"\bcheckpoint\b|np\.save|safetensors|msgpack", p.read_text())]
    for path in model_io:
        text = path.read_text()
        assert not re.search(r"np\.save|\.npy\b|msgpack|flax\.serialization", text), path
    # .npy is read in one place: users' .npz data, never unpickled
    readers = [p for p in CODE if re.search(r"\.npy\b|np\.load", p.read_text())]
    assert readers == [ROOT / "poisongate" / "tables.py"] and "allow_pickle=False" in readers[0].read_text()
    assert "orbax.checkpoint" in (ROOT / "poisongate" / "learning" / "models.py").read_text()
