"""The Python client against a real ferryd, started by tests/it/python.rs.

Skipped unless FERRY_LIVE_TEST is set: the Rust harness starts the
appliance and two recipients' agents and passes, in the environment:
FERRY_SERVER, FERRY_USER, FERRY_API_KEY, FERRY_FINGERPRINT (an admin who
sends), FERRY_BINARY (the ferry client), FERRY_TEST_RECIPIENTS (two emails
with agents running), FERRY_TEST_INTO (their agents' folders, in order),
FERRY_TEST_IDLE (a recipient with no agent), FERRY_TEST_LIMITED_KEY and
FERRY_TEST_RATE_LIMIT (a key and its requests per minute).
"""

import hashlib
import os
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ferry  # noqa: E402

LIVE = bool(os.environ.get("FERRY_LIVE_TEST"))


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@unittest.skipUnless(LIVE, "needs a live ferryd (tests/it/python.rs)")
class LiveTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.session = ferry.Session()
        cls.recipients = os.environ["FERRY_TEST_RECIPIENTS"].split(",")
        cls.into = os.environ["FERRY_TEST_INTO"].split(",")
        cls.idle = os.environ["FERRY_TEST_IDLE"]
        cls.src = Path(tempfile.mkdtemp(prefix="ferry-py-"))
        (cls.src / "frames").mkdir()
        (cls.src / "shot010_v003.mov").write_bytes(os.urandom(3 << 20))
        for frame in range(1001, 1006):
            (cls.src / "frames" / f"shot010.{frame}.exr").write_bytes(os.urandom(200_000))

    def test_1_a_delivery_from_python_reaches_both_agents(self):
        s = self.session
        delivery = s.create_delivery(
            "py-review",
            files=[self.src / "shot010_v003.mov", str(self.src / "frames" / "shot010.####.exr")],
            recipients=self.recipients,
            dest="share=media/py/review/",
            priorities={"*.mov": "high"},
        )
        self.assertIsNotNone(delivery.upload, "local files are uploaded once")
        for email, into in zip(self.recipients, self.into):
            job = delivery.download_for(email)
            self.assertIsNotNone(job, f"no job for {email}")
            done = s.wait(job.id, timeout=120, poll=0.5)
            self.assertEqual(done.files_done, 6)
            got = Path(into) / "py-review"
            listing = sorted(str(p.relative_to(got)) for p in got.rglob("*"))
            self.assertIn("shot010_v003.mov", listing)
            self.assertEqual(digest(got / "shot010_v003.mov"), digest(self.src / "shot010_v003.mov"))
            for frame in range(1001, 1006):
                name = f"shot010.{frame}.exr"
                # Paths are kept relative to the items' common folder.
                self.assertTrue((got / "frames" / name).is_file(), listing)
                self.assertEqual(digest(got / "frames" / name), digest(self.src / "frames" / name))
        detail = s.job(delivery.download_for(self.recipients[0]).id)
        self.assertEqual(sorted(l.kind for l in detail.lines), ["file", "sequence"])

        # The same files, now on the appliance: a delivery with no upload.
        again = s.create_delivery(
            "py-review-again",
            files=["share=media/py/review/shot010_v003.mov"],
            recipients=[self.recipients[0]],
        )
        self.assertIsNone(again.upload)
        s.wait(again.jobs[0].id, timeout=120, poll=0.5)

        # Mixed: one file on the appliance, one here (uploaded first).
        notes = self.src / "notes.txt"
        notes.write_text("sh010: grade warmer\n")
        mixed = s.create_delivery(
            "py-mixed",
            files=["share=media/py/review/shot010_v003.mov", notes],
            recipients=[self.recipients[1]],
            dest="share=media/py/mixed/",
        )
        self.assertIsNone(mixed.upload)
        s.wait(mixed.jobs[0].id, timeout=120, poll=0.5)
        got = Path(self.into[1]) / "py-mixed"
        # Share items keep their paths below the folder they have in common
        # (the agent's manifest of what arrived lies beside them).
        listing = sorted(str(p.relative_to(got)) for p in got.rglob("*")
                         if p.is_file() and p.name != ".ferry-manifest.b3")
        self.assertEqual(listing, ["mixed/notes.txt", "review/shot010_v003.mov"])
        self.assertEqual((got / "mixed/notes.txt").read_text(), "sh010: grade warmer\n")
        self.assertEqual(digest(got / "review/shot010_v003.mov"), digest(self.src / "shot010_v003.mov"))

    def test_2_jobs_are_listed_aborted_and_purged(self):
        s = self.session
        s.mkdir("media", "py/hold")
        (Path(os.environ["FERRY_TEST_MEDIA"]) / "py" / "hold" / "cut.mov").write_bytes(b"x" * 4096)
        delivery = s.create_delivery("py-hold", files=["share=media/py/hold/cut.mov"],
                                     recipients=[self.idle])
        job_id = delivery.jobs[0].id
        listed = {j.id: j for j in s.jobs(kind="download")}
        self.assertIn(job_id, listed)
        self.assertEqual(listed[job_id].status, "queued")
        self.assertEqual(listed[job_id].recipient, self.idle)
        # Paging follows the cursor: one job per page still finds them all.
        self.assertEqual({j.id for j in s.jobs(all=True, page_size=1)}, {j.id for j in s.jobs(all=True)})
        self.assertEqual(s.abort(job_id).status, "aborted")
        s.purge(job_id)
        with self.assertRaises(ferry.FerryError) as e:
            s.job(job_id)
        self.assertIn(e.exception.status, (404, 410))
        self.assertNotIn(job_id, {j.id for j in s.jobs(all=True)})

    def test_3_shares_folders_and_users(self):
        s = self.session
        s.mkdir("media", "py/new/deeper")
        names = {e.name: e.kind for e in s.browse("media", "py/new")}
        self.assertEqual(names, {"deeper": "folder"})
        self.assertIn("media", [sh.name for sh in s.shares()])
        # FERRY_SERVER lists a dead address first: the session moved on.
        self.assertEqual(s.server, os.environ["FERRY_SERVER"].split(",")[-1])
        emails = [u.email for u in s.users()]
        for email in self.recipients:
            self.assertIn(email, emails)
        invited = s.invite("colourist@client.example", "Cole Colourist")
        self.assertEqual(invited.role, "collaborator")
        self.assertIn("colourist@client.example", [u.email for u in s.users()])

    def test_4_errors_are_clear(self):
        s = self.session
        with self.assertRaises(ferry.FerryError) as e:
            ferry.Session(api_key="fk_" + "0" * 64).me()
        self.assertEqual((e.exception.status, e.exception.code), (401, "bad_api_key"))
        with self.assertRaises(ferry.FerryError) as e:
            s.create_delivery("nope", files=["share=nosuch/a.mov"], recipients=self.recipients)
        self.assertEqual(e.exception.code, "unknown_share")
        for escape in ("share=media/../../etc/passwd", "share=media//etc/passwd"):
            with self.assertRaises(ferry.FerryError) as e:
                s.create_delivery("escape", files=[escape], recipients=self.recipients)
            self.assertIn(e.exception.code, ("invalid_path", "outside_share"), escape)
        with self.assertRaises(ferry.FerryError) as e:
            s.browse("media", "../")
        self.assertEqual(e.exception.code, "invalid_path")
        with self.assertRaises(ferry.FerryError) as e:
            ferry.Session(fingerprint="ab" * 32).me()
        self.assertEqual(e.exception.code, "certificate_mismatch")
        with self.assertRaises(ferry.FerryError) as e:
            ferry.Session(server="https://127.0.0.1:1,https://127.0.0.1:2").me()
        self.assertEqual(e.exception.code, "unreachable")
        self.assertIn("https://127.0.0.1:1: ", str(e.exception))
        self.assertIn("https://127.0.0.1:2: ", str(e.exception))

    def test_5_each_key_has_its_own_rate_limit(self):
        limit = int(os.environ["FERRY_TEST_RATE_LIMIT"])
        limited = ferry.Session(api_key=os.environ["FERRY_TEST_LIMITED_KEY"], user="",
                                rate_limit_retries=0)
        answered = 0
        began = time.monotonic()
        with self.assertRaises(ferry.FerryError) as e:
            # The budget refills evenly over the minute, so a few more than
            # the burst may pass while this loop runs.
            for _ in range(2 * limit):
                limited.me()
                answered += 1
        self.assertEqual((e.exception.status, e.exception.code), (429, "rate_limited"))
        # The burst, plus what refilled while the loop ran, and no more.
        refilled = (time.monotonic() - began) * limit / 60
        self.assertGreaterEqual(answered, limit)
        self.assertLessEqual(answered, limit + refilled + 2)
        self.assertGreater(e.exception.retry_after, 0)
        # Another key is not held back by it.
        self.assertTrue(self.session.me().email)


if __name__ == "__main__":
    unittest.main()
