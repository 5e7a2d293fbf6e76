"""Python client for a Ferry appliance.

    import ferry
    session = ferry.Session()          # FERRY_SERVER, FERRY_USER, FERRY_API_KEY, FERRY_FINGERPRINT
    delivery = session.create_delivery(
        "theproject-review-2026-11-26",
        files=["share=media/theproject/review/shot010.mov", "/local/frames/"],
        recipients=["director@client.example"],
        dest="share=media/theproject/review/",
        priorities={"*.mov": "high"},
    )
    for job in session.jobs(all=True):
        print(job.id, job.status, job.name)

The appliance's certificate is pinned by the SHA-256 fingerprint of its
key, as the `ferry` command does; no certificate authority is consulted,
and a renewed certificate for the same key is accepted.
"""

from .client import Session
from .errors import FerryError
from .types import (
    Delivery,
    Job,
    JobDetail,
    JobLine,
    JobRef,
    Share,
    ShareEntry,
    User,
)

__all__ = [
    "Session",
    "FerryError",
    "Delivery",
    "Job",
    "JobDetail",
    "JobLine",
    "JobRef",
    "Share",
    "ShareEntry",
    "User",
]
