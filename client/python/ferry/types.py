"""Typed views of the API's JSON (field names as the API gives them)."""

from dataclasses import dataclass, field, fields
from typing import List, Optional


def _build(cls, data):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class User:
    id: int
    email: str
    name: str
    role: str
    notify: bool = True
    status: Optional[str] = None
    # "person", or "service" for an account that only ever uses API keys
    # (automation such as the ftrack action).
    kind: str = "person"

    @classmethod
    def from_json(cls, data):
        return _build(cls, data)


@dataclass
class Share:
    name: str
    read: bool
    write: bool
    parent: Optional[str] = None
    path: Optional[str] = None

    @classmethod
    def from_json(cls, data):
        return _build(cls, data)


@dataclass
class ShareEntry:
    """A file or folder in a share."""

    name: str
    kind: str  # "file" or "folder"
    size: int = 0
    mtime: Optional[int] = None

    @classmethod
    def from_json(cls, data):
        return _build(cls, data)


@dataclass
class Job:
    id: int
    kind: str
    name: str
    status: str
    owner: str
    folder: str
    files_total: int
    files_done: int
    bytes_total: int
    bytes_done: int
    recipient: Optional[str] = None
    delivery: Optional[int] = None
    delivery_name: Optional[str] = None
    share: Optional[str] = None
    bytes_skipped: int = 0
    rate: int = 0
    retries: int = 0
    error: Optional[str] = None
    created_at: Optional[int] = None
    finished_at: Optional[int] = None
    expires_at: Optional[int] = None

    @classmethod
    def from_json(cls, data):
        return _build(cls, data)

    @property
    def finished(self):
        return self.status in ("done", "aborted")


@dataclass
class JobLine:
    kind: str
    name: str
    files: int
    size: int
    bytes_done: int
    priority: int
    status: str
    missing: List[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data):
        return _build(cls, data)


@dataclass
class JobDetail:
    job: Job
    lines: List[JobLine]

    @classmethod
    def from_json(cls, data):
        return cls(
            job=Job.from_json(data["job"]),
            lines=[JobLine.from_json(l) for l in data.get("lines", [])],
        )


@dataclass
class JobRef:
    id: int
    name: str
    kind: str
    recipient: Optional[str] = None

    @classmethod
    def from_json(cls, data):
        return _build(cls, data)


@dataclass
class Delivery:
    id: int
    jobs: List[JobRef]

    @classmethod
    def from_json(cls, data):
        return cls(id=data["delivery"], jobs=[JobRef.from_json(j) for j in data["jobs"]])

    @property
    def upload(self):
        return next((j for j in self.jobs if j.kind == "upload"), None)

    def download_for(self, email):
        return next(
            (j for j in self.jobs if j.kind == "download" and j.recipient == email), None
        )
