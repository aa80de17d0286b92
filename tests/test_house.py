"""The house: stages apart from the library, no stage importing another, Prefect only in flows/, detectors as
plug-ins in their own modules, dvc.yaml listing each stage's code, and a wheel holding the library alone."""
import ast
import os
import shutil
import subprocess
import zipfile

import pytest
import yaml
from code_deps import ROOT, stage_code

from poisongate.detectors.base import Detector
from poisongate.detectors.registry import DETECTORS
from tasks import STAGES


def python_files(*folders):
    return [p for folder in folders for p in (ROOT / folder).rglob("*.py")]


def imports(path):
    tree = ast.parse(path.read_text())
    return {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names} | {
        n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}


def test_tasks_holds_one_module_per_dvc_stage_and_nothing_else():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    modules = {p.stem for p in (ROOT / "tasks").glob("*.py")} - {"__init__"}
    assert modules == set(dvc["stages"]) == set(STAGES)
    for stage in STAGES:
        assert dvc["stages"][stage]["cmd"] == f"poisongate stage {stage}"


def test_no_stage_imports_another_and_the_library_imports_no_stage_or_flow():
    for path in (ROOT / "tasks").glob("*.py"):
        others = {f"tasks.{s}" for s in STAGES} - {f"tasks.{path.stem}"}
        assert not imports(path) & others, path
    for path in python_files("poisongate"):
        if path.name != "cli.py":  # the entry point: it starts the flows and the stages
            assert not {m for m in imports(path) if m.split(".")[0] in ("tasks", "flows")}, path


def test_prefect_is_used_only_in_flows():
    for path in python_files("poisongate", "tasks"):
        assert not {m for m in imports(path) if m.split(".")[0] in ("prefect", "prefect_dask")}, path


def test_every_detector_is_a_plug_in_in_its_own_module_with_its_words():
    assert len(DETECTORS) == 10
    for name, cls in DETECTORS.items():
        assert cls.__module__ == f"poisongate.detectors.{name}", (name, cls.__module__)
        assert cls.description and cls.reason and cls.Options is not None


def test_the_base_class_makes_each_detector_say_what_it_is():
    with pytest.raises(TypeError, match="must define description, reason"):
        type("Nameless", (Detector,), {"name": "nameless"})


def test_dvc_yaml_lists_each_stage_code_params_and_plots():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert dvc["vars"] == [{"code": "."}]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for stage, spec in dvc["stages"].items():
        code = sorted(d.removeprefix("${code}/") for d in spec["deps"] if d.startswith("${code}/"))
        assert code == stage_code(stage), f"dvc.yaml stage {stage}: its code deps must be {stage_code(stage)}"
        for key in spec.get("params", []):
            node = params
            for part in key.split("."):
                assert part in node, (stage, key)
                node = node[part]
    assert {p for p in dvc["plots"]} == {f"reports/plots/{n}.png" for n in ("loss_curve", "confusion", "batch_pca",
                                                                          "detector_scores", "batch_tsne", "influence")}


def test_expectations_folder_is_committed_with_its_readme_and_the_user_file():
    tracked = subprocess.run(["git", "ls-files", "expectations"], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    assert {"expectations/README.md", "expectations/user.json"} <= set(tracked)


@pytest.mark.slow  # builds the wheel in an isolated environment
def test_the_wheel_holds_the_library_and_nothing_generic(tmp_path):
    uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` names itself in $UV
    assert uv, "uv is not on PATH: install it (`python3 -m pip install uv`) as the README says"
    subprocess.run([uv, "build", "--wheel", "-q", "-o", str(tmp_path)], cwd=ROOT, check=True)
    (wheel,) = tmp_path.glob("*.whl")
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"poisongate"}
