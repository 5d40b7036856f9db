"""One writer for the video row: only ``vidgen.jobs.lifecycle`` writes a video's ``status``
or ``version``, its event-log rows (``video_status_events``), its attempt rows or its outbox
rows (``webhook_deliveries``), or inserts a video. Every other module asks it (see its
docstring).

The check reads the source (``ast``, not a grep of lines, so SQL split over several literals
and ORM calls spread over lines are seen whole) and fails on any such write elsewhere:

- SQL text that inserts into ``videos`` or ``webhook_deliveries``, writes
  ``video_status_events`` or ``video_attempts``, or whose ``UPDATE videos … SET`` assigns
  ``status`` or ``version``;
- ORM writes: ``update(...)`` on a query of ``Video`` that sets ``status`` or ``version``
  (or passes ``**`` values it cannot see), any write through ``VideoStatusEvent`` or
  ``VideoAttempt``, ``Video.create``-like and ``WebhookDelivery.create``-like calls,
  ``F("version")``, and ``.save()`` on a video.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "vidgen"
LIFECYCLE = SRC / "jobs" / "lifecycle"
MIGRATIONS = SRC / "migrations"  # the schema itself, not a change of a video

_SQL_WRITES = (
    (re.compile(r"\bINSERT\s+INTO\s+\"?videos\"?[\s(]", re.I), "inserts a video"),
    (
        re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?video_status_events\b", re.I),
        "writes the event log",
    ),
    (
        re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?video_attempts\b", re.I),
        "writes attempt rows",
    ),
    # The outbox's rows are events: made with the change they report (their delivery state
    # is vidgen.webhooks_out's to update).
    (re.compile(r"\bINSERT\s+INTO\s+\"?webhook_deliveries\b", re.I), "writes the outbox"),
)
_UPDATE_VIDEOS = re.compile(
    r"\bUPDATE\s+\"?videos\"?(?:\s+AS\s+\w+)?\s+SET\b(?P<sets>.*?)(?:\bWHERE\b|\bFROM\b|\bRETURNING\b|$)",
    re.I | re.S,
)
_OWN_COLUMN = re.compile(r"(?<![\w.])(?:\w+\.)?\"?(status|version)\"?\s*=", re.I)

_VIDEO_MODELS = {"Video"}
_LOG_MODELS = {"VideoStatusEvent", "VideoAttempt"}
_OUTBOX_MODELS = {"WebhookDelivery"}
_ORM_WRITES = {
    "update",
    "create",
    "bulk_create",
    "bulk_update",
    "get_or_create",
    "update_or_create",
    "delete",
}
_CREATES = _ORM_WRITES - {"update", "delete"}


def _text(node: ast.AST) -> str | None:
    """A string literal's text; an f-string's with ``{}`` for each replacement field."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{}"
            for v in node.values
        )
    return None


def _root_model(node: ast.AST) -> str | None:
    """The model a query chain starts from: ``Video`` in ``Video.filter(...).update(...)``
    (also ``models.Video``)."""
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "models":
                return node.attr
            node = node.value
        elif isinstance(node, ast.Name):
            return node.id
        else:
            return None


def violations(source: str) -> list[tuple[int, str]]:
    """(line, what) for every write of the video row's lifecycle columns in ``source``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        text = _text(node)
        if text is not None:
            for pattern, what in _SQL_WRITES:
                if pattern.search(text):
                    found.append((node.lineno, f"SQL {what}"))
            for match in _UPDATE_VIDEOS.finditer(text):
                column = _OWN_COLUMN.search(match.group("sets"))
                if column:
                    found.append((node.lineno, f"SQL sets videos.{column.group(1).lower()}"))
            continue
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "F" and node.args:
            if isinstance(node.args[0], ast.Constant) and node.args[0].value == "version":
                found.append((node.lineno, 'F("version"): bumps a version'))
            continue
        if isinstance(func, ast.Name) and func.id in _LOG_MODELS:
            found.append((node.lineno, f"builds a {func.id} row"))
            continue
        if not isinstance(func, ast.Attribute):
            continue
        model = _root_model(func.value)
        if func.attr == "save" and "video" in ast.unparse(func.value).lower():
            found.append((node.lineno, "saves a video"))
        elif func.attr in _ORM_WRITES and model in _LOG_MODELS:
            found.append((node.lineno, f"{model}.{func.attr}: writes {model} rows"))
        elif func.attr in _CREATES and model in _OUTBOX_MODELS:
            found.append((node.lineno, f"{model}.{func.attr}: writes the outbox"))
        elif func.attr in _CREATES and model in _VIDEO_MODELS:
            found.append((node.lineno, f"{model}.{func.attr}: inserts a video"))
        elif func.attr == "update" and model in _VIDEO_MODELS:
            names = {k.arg for k in node.keywords}
            if None in names:
                found.append((node.lineno, "Video update with ** values (status? version?)"))
            elif names & {"status", "version"}:
                found.append(
                    (node.lineno, f"Video update of {sorted(names & {'status', 'version'})}")
                )
    return found


def test_only_the_lifecycle_writes_status_version_and_the_event_log() -> None:
    outside = [
        f"{path.relative_to(SRC.parent)}:{line}: {what}"
        for path in sorted(SRC.rglob("*.py"))
        if LIFECYCLE not in path.parents and MIGRATIONS not in path.parents
        for line, what in violations(path.read_text())
    ]
    assert not outside, "writes that belong in vidgen.jobs.lifecycle:\n" + "\n".join(outside)


def test_the_lifecycle_itself_is_seen_writing() -> None:
    # The check must see the writes where they are allowed, or it would pass on anything.
    seen = {what for path in LIFECYCLE.rglob("*.py") for _, what in violations(path.read_text())}
    assert {
        "SQL inserts a video",
        "SQL writes the event log",
        "SQL writes attempt rows",
        "SQL writes the outbox",
    } <= seen
    assert 'F("version"): bumps a version' in seen
    assert any(what.startswith("SQL sets videos.status") for what in seen)


@pytest.mark.parametrize(
    "source",
    [
        'await Video.filter(id=1).update(status="queued")',
        "await Video.filter(id=1).update(**changes)",
        'await models.Video.filter(id=i).update(version=F("version") + 1)',
        "await VideoStatusEvent.create(video_id=1, to_status='failed')",
        "await VideoAttempt.filter(video_id=1).update(outcome='failed')",
        "await Video.create(owner_id=1, prompt='p')",
        "await video.save()",
        "await conn.execute_query('UPDATE videos SET status = $1 WHERE id = $2', p)",
        # Implicitly concatenated literals, over two lines, read as one statement.
        'sql = (f"UPDATE videos SET x = 1, version = version + 1"\n f" WHERE id = {i}")',
        "sql = 'INSERT INTO video_status_events (video_id) VALUES (?)'",
        "sql = f'INSERT INTO videos ({names}) VALUES ({marks})'",
        "sql = 'INSERT INTO webhook_deliveries (video_id) VALUES (?)'",
        "await WebhookDelivery.create(video_id=1)",
    ],
)
def test_each_kind_of_write_is_caught(source: str) -> None:
    assert violations(source), source


@pytest.mark.parametrize(
    "source",
    [
        # The heartbeat's lease (a job column, not the lifecycle's), filtered on status.
        "sql = 'UPDATE videos AS v SET lease_expires_at = $1 FROM unnest($2) AS j(id)"
        " WHERE v.id = j.id AND v.status = 1'",
        # A story's videos leave a paragraph that is gone.
        "await Video.filter(story_id=1).update(paragraph_index=None)",
        "await Video.filter(status='queued').count()",
        "await project.save(update_fields=['name'])",
        "sql = 'SELECT status, version FROM videos WHERE id = ?'",
        # A delivery's outcome.
        "await WebhookDelivery.filter(id=1).update(state='delivered')",
    ],
)
def test_reads_and_other_columns_pass(source: str) -> None:
    assert not violations(source), source
