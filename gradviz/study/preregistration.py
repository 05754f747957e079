"""The pre-registration record: the design frozen before the first participant (stimulus set and its hash,
conditions, exclusion rule, analysis, planned N), stored once as canonical JSON keyed by its own sha256.

Freezing is refused once anyone has consented, and a frozen study refuses another stimulus set
(gradviz.study.stimulus_sets.activate_set), so what was registered is what participants saw.
"""
from __future__ import annotations

import hashlib
import json

from sqlalchemy import Engine, func, select

from gradviz import __version__
from gradviz.study.analysis import MAX_FAILED_CHECKS
from gradviz.study.db import NotReady, StudyLocked, get_setting, insert_ignore, now, participants, preregistrations
from gradviz.study.design import index_set
from gradviz.study.mixed_model import ANALYSIS
from gradviz.study.stimulus_sets import load_set, set_hash

EXCLUSION = (f"A participant who fails more than {MAX_FAILED_CHECKS} attention check(s) (names a clean, "
             "unambiguous digit wrongly) is excluded from every analysis.")


def current(engine: Engine) -> dict | None:
    """The frozen record of this study (with its sha256), or None."""
    with engine.connect() as conn:
        row = conn.execute(select(preregistrations).order_by(preregistrations.c.frozen_at)).first()
    return None if row is None else {**json.loads(row.record), "record_sha256": row.record_sha256}


def design_record(engine: Engine, planned_n: int, hypothesis: str, alpha: float = 0.05,
                  power: dict | None = None) -> dict:
    """What would be frozen now: everything needed to check later that the study ran as planned."""
    set_id = get_setting(engine, "active_set")
    if not set_id:
        raise NotReady("no stimulus set is active: build and activate one before pre-registering")
    rows = load_set(engine, set_id)
    items, conditions, _, attention = index_set(rows)
    models = sorted({c.split("|", 1)[0] for c in conditions})
    reference = next((m for m in models if m.endswith("gradreg")), models[0])
    return {
        "frozen_at": now(), "gradviz_version": __version__, "hypothesis": hypothesis,
        "stimulus_set": {"set_id": set_id, "sha256": set_hash(rows), "dataset": get_setting(engine, "active_dataset"),
                         "items": len(items), "attention_checks": len(attention), "stimuli": len(rows)},
        "conditions": conditions, "source_models": models, "reference_model": reference,
        "allocation": f"Latin square over {len(conditions)} lists; list = allocation slot mod {len(conditions)}",
        "exclusion_rule": EXCLUSION, "analysis": ANALYSIS.format(reference=reference, alpha=alpha), "alpha": alpha,
        "planned_participants": int(planned_n), "power_analysis": power,
    }


def canonical(record: dict) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def freeze(engine: Engine, planned_n: int, hypothesis: str, alpha: float = 0.05, power: dict | None = None) -> dict:
    """Store the record; refused when a record exists or anyone has consented already."""
    if planned_n < 1:
        raise ValueError("the planned number of participants must be at least 1")
    if current(engine) is not None:
        raise StudyLocked("this study is already pre-registered; a new design is a new study (new database)")
    with engine.connect() as conn:
        started = conn.execute(select(func.count()).select_from(participants)).scalar_one()
    if started:
        raise StudyLocked(f"{started} participant(s) have consented already: a pre-registration must come "
                              "before the first participant")
    record = design_record(engine, planned_n, hypothesis, alpha, power)
    text = canonical(record)
    digest = hashlib.sha256(text.encode()).hexdigest()
    with engine.begin() as conn:
        conn.execute(insert_ignore(preregistrations, engine, ["record_sha256"]),
                     {"record_sha256": digest, "frozen_at": record["frozen_at"],
                      "set_id": record["stimulus_set"]["set_id"], "record": text})
    return {**record, "record_sha256": digest}


def verify(engine: Engine) -> list[str]:
    """Problems with the frozen record today: a changed record or a stimulus set that no longer matches."""
    record = current(engine)
    if record is None:
        return ["the study is not pre-registered"]
    problems = []
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    if hashlib.sha256(canonical(body).encode()).hexdigest() != record["record_sha256"]:
        problems.append("the stored record does not match its sha256")
    stored = set_hash(load_set(engine, record["stimulus_set"]["set_id"]))
    if stored != record["stimulus_set"]["sha256"]:
        problems.append("the stimulus set's images or labels changed after pre-registration")
    if get_setting(engine, "active_set") != record["stimulus_set"]["set_id"]:
        problems.append("participants are shown a different stimulus set than the registered one")
    return problems


def to_markdown(record: dict) -> str:
    """A human-readable copy for the OSF/AsPredicted form and the export."""
    s = record["stimulus_set"]
    power = record.get("power_analysis") or {}
    lines = [
        "# Pre-registration", "",
        f"- Frozen: {record['frozen_at']} (gradviz {record['gradviz_version']})",
        f"- Record sha256: `{record['record_sha256']}`", "",
        "## Hypothesis", "", record["hypothesis"] or "(none given)", "",
        "## Design", "",
        f"- Stimulus set `{s['set_id']}` ({s['dataset']}), sha256 `{s['sha256']}`: {s['items']} items, "
        f"{s['attention_checks']} attention checks, {s['stimuli']} images",
        f"- Conditions ({len(record['conditions'])}): " + ", ".join(record["conditions"]),
        f"- Allocation: {record['allocation']}",
        f"- Planned participants: {record['planned_participants']}", "",
        "## Exclusion rule", "", record["exclusion_rule"], "",
        "## Analysis", "", record["analysis"], "",
    ]
    if power:
        lines += ["## Power analysis", "", "```json", json.dumps(power, indent=2), "```", ""]
    return "\n".join(lines)
