"""configs/ reproduces the shipped models from the data alone: every recipe is used by configs/README.md, and
whatever a recipe starts from (``init_from``, ``teachers``) is either shipped or a run an earlier line makes."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from emotionlab.models.hub import shipped_models

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "configs" / "README.md"


def _lines() -> list[str]:
    """The README's shell lines, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    return [ln for b in blocks for ln in b.replace("\\\n", " ").splitlines() if ln.strip()]


def _recipes() -> list[Path]:
    return sorted(p for p in (ROOT / "configs").glob("*.yaml") if p.stem != "zoo_budget")


def test_every_recipe_is_in_a_documented_sequence():
    used = {m for ln in _lines() for m in re.findall(r"--config (configs/\S+\.yaml)", ln)}
    assert used == {f"configs/{p.name}" for p in _recipes()}


def test_every_starting_point_is_shipped_or_made_by_an_earlier_line():
    lines = _lines()
    shipped = set(shipped_models())
    for p in _recipes():
        cfg = yaml.safe_load(p.read_text()) or {}
        users = [i for i, ln in enumerate(lines) if f"--config configs/{p.name}" in ln]
        for ref in [cfg.get("init_from")] + list(cfg.get("teachers") or []):
            if not ref:
                continue
            if not str(ref).startswith("runs/"):
                assert ref in shipped, f"{p.name}: starts from {ref!r}, which does not ship"
                continue
            makers = [i for i, ln in enumerate(lines) if re.search(rf"--out {re.escape(ref)}(\s|$)", ln)]
            assert makers and min(makers) < min(users), f"{p.name}: nothing before it makes {ref}"
