"""The study archive: everything a reader needs to check the study in one zip — the answers, the
pre-registration (JSON and Markdown), and the stimulus set with its provenance manifest."""
from __future__ import annotations

import json

from sqlalchemy import Engine

from gradviz.study import preregistration
from gradviz.study.analysis import export_frame, responses_frame
from gradviz.study.sessions import active_set, progress
from gradviz.study.stimulus_sets import stimulus_zip


def study_archive(engine: Engine) -> bytes:
    record = preregistration.current(engine)
    set_id = record["stimulus_set"]["set_id"] if record else active_set(engine)
    extra = {"answers.csv": export_frame(responses_frame(engine)).to_csv(index=False),
             "progress.json": json.dumps(progress(engine), indent=2)}
    if record:
        extra["preregistration.json"] = json.dumps(record, indent=2, ensure_ascii=False)
        extra["preregistration.md"] = preregistration.to_markdown(record)
    return stimulus_zip(engine, set_id, extra)
