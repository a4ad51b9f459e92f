"""A new Prefect database starts as a copy of an empty, migrated one (infra/prefect_db.py)."""

from __future__ import annotations

import sqlite3

from infra.prefect_db import seed


def test_a_new_database_starts_migrated_and_empty_and_an_existing_one_is_left_alone(tmp_path):
    db = tmp_path / "project" / "prefect" / "prefect.db"
    seed(db)
    assert [p.name for p in db.parent.iterdir()] == ["prefect.db"]  # no copy left half-way
    with sqlite3.connect(db) as con:
        (revision,) = con.execute("select version_num from alembic_version").fetchone()
        tables = {name for (name,) in con.execute("select name from sqlite_master where type = 'table'")}
        assert revision and {"flow_run", "deployment", "automation"} <= tables
        assert con.execute("select count(*) from flow_run").fetchone() == (0,)

    mine = tmp_path / "mine.db"
    mine.write_bytes(b"a database with history")
    seed(mine)
    assert mine.read_bytes() == b"a database with history"


def test_where_no_template_can_be_built_the_server_migrates_its_own(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("TSFM_CACHE_DIR", str(blocker / "cache"))  # under a file: no folder can be made
    db = tmp_path / "prefect.db"
    seed(db)  # no error: the copy is only a speed-up
    assert not db.exists()
