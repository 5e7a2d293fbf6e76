"""The ftrack action's logic against recorded ftrack query results.

There is no ftrack server here: a small stand-in answers the action's
queries from tests/fixtures/ftrack_review_session.json, as
ftrack-python-api would, and a stand-in Ferry session records the delivery
it is asked for (the real client is tested against a real ferryd in
test_live.py).
"""

import datetime
import importlib.util
import json
import re
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import ferry  # noqa: E402

spec = importlib.util.spec_from_file_location(
    "ftrack_review_distribute", HERE.parent / "examples" / "ftrack_review_distribute.py")
action = importlib.util.module_from_spec(spec)
spec.loader.exec_module(action)

RECORDED = json.loads((HERE / "fixtures" / "ftrack_review_session.json").read_text())
SESSION_ID = RECORDED["review_session"]["id"]


class Result:
    def __init__(self, rows):
        self.rows = rows

    def all(self):
        return list(self.rows)


class RecordedFtrack:
    """Answers the action's queries the way an ftrack server does, from the
    recorded entities, and refuses (as the server does) a query that names
    an attribute the entity type does not have in ftrack's schema."""

    QUERY = re.compile(r'^select (.+) from (\w+) where ([\w.]+) is "([^"]*)"$')

    def __init__(self, recorded):
        self.recorded = recorded
        self.schema = recorded["schema"]
        self.queries = []

    def check(self, entity, path):
        """The entity type a dotted attribute path ends on; an error like
        the server's for a name the schema does not have."""
        for name in path.split("."):
            attributes = self.schema[entity]
            if name not in attributes:
                raise ValueError(f'Server reported error: KeyError("{name}" is not a valid attribute of {entity})')
            entity = attributes[name] or entity
        return entity

    def value(self, entity, row, path):
        """A row's value at a dotted path, following relations by id."""
        head, _, rest = path.partition(".")
        target = self.schema[entity][head]
        if target is None:
            return row.get(head)
        if not rest:
            return self.shaped(target, self.find(target, row.get(head)), ["id"])
        if rest == "id":
            return row.get(head)
        return self.value(target, self.find(target, row.get(head)) or {}, rest)

    def find(self, entity, entity_id):
        return next((r for r in self.recorded["entities"].get(entity, []) if r["id"] == entity_id), None)

    def shaped(self, entity, row, paths):
        """What the server returns for a row: the selected attributes, and
        the selected attributes of related entities as nested entities."""
        if row is None:
            return None
        out = {"id": row["id"]}
        for path in paths:
            head, _, rest = path.partition(".")
            target = self.schema[entity][head]
            if target is None:
                out[head] = row.get(head)
            else:
                related = self.find(target, row.get(head)) or {"id": row.get(head)}
                out[head] = self.shaped(target, related, [rest] if rest else [])
        return out

    def query(self, expression):
        self.queries.append(expression)
        m = self.QUERY.match(expression)
        if not m:
            raise ValueError(f"Server reported error: cannot parse {expression!r}")
        selected, entity, key, wanted = m.groups()
        if entity not in self.schema:
            raise ValueError(f"Server reported error: unknown entity type {entity}")
        paths = [p.strip() for p in selected.split(",")]
        for path in paths + [key]:
            self.check(entity, path)
        rows = [r for r in self.recorded["entities"].get(entity, [])
                if self.value(entity, r, key) == wanted]
        return Result([self.shaped(entity, r, paths) for r in rows])

    def get(self, entity, entity_id):
        assert entity == "ReviewSession" and entity_id == SESSION_ID
        return self.recorded["review_session"]


class RecordedLocation:
    def __init__(self, paths):
        self.paths = paths

    def get_filesystem_path(self, component):
        try:
            return self.paths[component["id"]]
        except KeyError:
            raise RuntimeError("component is not in this location") from None


class RecordingFerry:
    def __init__(self, fail=None):
        self.calls = []
        self.fail = fail

    def create_delivery(self, name, files, recipients, dest=None, priorities=None):
        self.calls.append(dict(name=name, files=files, recipients=recipients, dest=dest,
                               priorities=priorities))
        if self.fail:
            raise self.fail
        return ferry.Delivery.from_json({"delivery": 7, "jobs": [
            {"id": 21, "name": name + "-upload", "kind": "upload", "recipient": None},
            {"id": 22, "name": name, "kind": "download", "recipient": recipients[0]},
            {"id": 23, "name": name, "kind": "download", "recipient": recipients[-1]},
        ]})

    def shares(self):
        return [ferry.Share(name="media", read=True, write=True),
                ferry.Share(name="archive", read=True, write=False)]


def event(selection, values=None):
    data = {"selection": selection}
    if values is not None:
        data["values"] = values
    return {"data": data}


ONE_SESSION = [{"entityType": "reviewsession", "entityId": SESSION_ID}]


class FtrackActionTest(unittest.TestCase):
    def setUp(self):
        self.ftrack = RecordedFtrack(RECORDED)
        self.ferry = RecordingFerry()
        self.mapping = action.share_map("/mnt/projects=media;/mnt/vault=vault")

    def test_offered_only_on_one_review_session(self):
        a = action.DistributeAction(self.ftrack, self.ferry, self.mapping)
        self.assertEqual(a.discover(event(ONE_SESSION))["items"][0]["actionIdentifier"], action.IDENTIFIER)
        self.assertIsNone(a.discover(event([])))
        self.assertIsNone(a.discover(event(ONE_SESSION * 2)))
        self.assertIsNone(a.discover(event([{"entityType": "task", "entityId": "x"}])))

    def test_the_dialog_is_prefilled_from_the_session(self):
        form = action.dialog(self.ftrack, SESSION_ID, ["media"], today=datetime.date(2026, 11, 26))
        fields = {i.get("name"): i for i in form["items"]}
        # Collaborators, each once, without the invitee that has no email.
        self.assertEqual(fields["recipients"]["value"], "director@client.example\neditor@client.example")
        self.assertEqual(fields["folder"]["value"], "20261126/theproject_review_2026-11-26")
        self.assertEqual(fields["share"]["value"], "media")
        # Through the action: only shares the Ferry user may write are offered.
        a = action.DistributeAction(self.ftrack, self.ferry, self.mapping)
        shares = next(i for i in a.launch(event(ONE_SESSION))["items"] if i.get("name") == "share")
        self.assertEqual([d["value"] for d in shares["data"]], ["media"])

    def test_one_delivery_with_previews_first_and_sequences_as_ranges(self):
        location = RecordedLocation(RECORDED["paths"])
        result = action.distribute(
            self.ftrack, self.ferry, location, SESSION_ID,
            {"recipients": "director@client.example\neditor@client.example",
             "folder": "20261126/theproject", "share": "media"},
            self.mapping)
        self.assertTrue(result["success"], result)
        self.assertIn("jobs 21, 22, 23", result["message"])
        self.assertIn("offline", result["message"])   # a component not in the location
        self.assertIn("thumbnail", result["message"])  # not a movie or a sequence
        (call,) = self.ferry.calls
        self.assertEqual(call["recipients"], ["director@client.example", "editor@client.example"])
        self.assertEqual(call["dest"], "share=media/20261126/theproject")
        self.assertEqual(call["files"], [
            # on storage the appliance mounts: sent from its share
            "share=media/theproject/sh010/v003/sh010_v003.mov",
            # only on the artist's machine: uploaded by the ferry client
            "/home/artist/exports/sh010_v003_review.mp4",
            "share=media/theproject/sh010/v003/exr/sh010_v003.%04d.exr[1001-1100]",
            "share=vault/theproject/sh020/plate/sh020_plate.%04d.dpx[990-991]",
        ])
        self.assertEqual(call["priorities"], {"*.mov": "high", "*.mp4": "high"})

    def test_failures_are_reported_clearly(self):
        location = RecordedLocation(RECORDED["paths"])
        values = {"recipients": "director@client.example", "folder": "x", "share": "media"}
        refusing = RecordingFerry(fail=ferry.FerryError(404, "unknown_share", "there is no share vault"))
        result = action.distribute(self.ftrack, refusing, location, SESSION_ID, values, self.mapping)
        self.assertEqual(result, {"success": False,
                                  "message": "Ferry refused the delivery: there is no share vault"})
        result = action.distribute(self.ftrack, self.ferry, location, SESSION_ID,
                                   dict(values, recipients=" \n"), self.mapping)
        self.assertFalse(result["success"])
        self.assertIn("No recipients", result["message"])
        empty = RecordedFtrack(dict(RECORDED, entities=dict(RECORDED["entities"], ReviewSessionObject=[])))
        result = action.distribute(empty, self.ferry, location, SESSION_ID, values, self.mapping)
        self.assertFalse(result["success"])
        self.assertIn("no published movies", result["message"])
        self.assertEqual(self.ferry.calls, [])

    def test_the_stand_in_refuses_what_ftrack_refuses(self):
        # The query of an earlier version of the action, which a real ftrack
        # refuses: ReviewSessionObject has no asset_version_id.
        with self.assertRaisesRegex(ValueError, "asset_version_id"):
            self.ftrack.query(
                f'select asset_version_id from ReviewSessionObject where review_session_id is "{SESSION_ID}"')
        # Nor does a plain Component have members (a sequence's frames are
        # components whose container it is).
        with self.assertRaisesRegex(ValueError, "members"):
            self.ftrack.query('select name, members from Component where version_id is "v-sh010-0003"')
        # Every query the action makes names only what the schema has.
        location = RecordedLocation(RECORDED["paths"])
        action.distribute(self.ftrack, self.ferry, location, SESSION_ID,
                          {"recipients": "a@b.example", "folder": "f", "share": "media"}, self.mapping)
        self.assertTrue(any("ReviewSessionObject" in q for q in self.ftrack.queries))
        self.assertTrue(any("container.id" in q for q in self.ftrack.queries))

    def test_everyone_sees_the_action_unless_a_list_says_who(self):
        sel = dict(event(ONE_SESSION), source={"user": {"username": "Dana"}})
        everyone = action.DistributeAction(self.ftrack, self.ferry, self.mapping)
        self.assertIsNotNone(everyone.discover(sel))
        listed = action.DistributeAction(self.ftrack, self.ferry, self.mapping,
                                         action.allowed_users("dana, eli"))
        self.assertIsNotNone(listed.discover(sel))
        other = dict(sel, source={"user": {"username": "mallory"}})
        self.assertIsNone(listed.discover(other))
        self.assertFalse(listed.launch(other)["success"])

    def test_share_map_is_checked_and_the_longest_prefix_wins(self):
        mapping = action.share_map("/mnt=root;/mnt/projects=media")
        self.assertEqual(action.as_ferry_item("/mnt/projects/a.mov", mapping), "share=media/a.mov")
        self.assertEqual(action.as_ferry_item("/mnt/other/a.mov", mapping), "share=root/other/a.mov")
        self.assertEqual(action.as_ferry_item("/elsewhere/a.mov", mapping), "/elsewhere/a.mov")
        with self.assertRaises(ValueError):
            action.share_map("/mnt/projects")


if __name__ == "__main__":
    unittest.main()
