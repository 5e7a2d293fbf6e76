"""The Session: one appliance, one API key, its certificate pinned."""

import hashlib
import json
import os
import shutil
import ssl
import subprocess
import time
from urllib.parse import quote

import requests
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from requests.adapters import HTTPAdapter

from .errors import FerryError
from .types import Delivery, Job, JobDetail, Share, ShareEntry, User


def _pins_of(der):
    """The pins a certificate satisfies: the SHA-256 of its public key
    (SubjectPublicKeyInfo), which outlives renewals, and of the whole
    certificate, as earlier versions pinned it."""
    cert = x509.load_der_x509_certificate(der)
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return {hashlib.sha256(spki).hexdigest(), hashlib.sha256(der).hexdigest()}


class _PinnedConnection(urllib3.connection.HTTPSConnection):
    """An HTTPS connection that closes unless the server's certificate
    carries the pinned key."""

    pin = None

    def connect(self):
        super().connect()
        der = self.sock.getpeercert(binary_form=True)
        if der is None or self.pin not in _pins_of(der):
            self.close()
            raise ssl.SSLError(f"the server's key is not the pinned {self.pin}")


class _PinnedAdapter(HTTPAdapter):
    """Accepts only a certificate for the key whose SHA-256 fingerprint we
    hold.

    The appliance's certificate is self-signed, or issued by an ACME CA
    for the same key; trust comes from the fingerprint its admin gave
    out, as with the ``ferry`` command.
    """

    def __init__(self, fingerprint, **kwargs):
        connection = type("PinnedConnection", (_PinnedConnection,), {"pin": fingerprint})
        self._pool = type("PinnedPool", (urllib3.HTTPSConnectionPool,), {"ConnectionCls": connection})
        super().__init__(**kwargs)

    def init_poolmanager(self, connections, maxsize, block=False, **kwargs):
        kwargs["cert_reqs"] = "CERT_NONE"
        super().init_poolmanager(connections, maxsize, block, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": urllib3.HTTPConnectionPool,
            "https": self._pool,
        }


def _env(value, name):
    value = value if value is not None else os.environ.get(name)
    if not value:
        raise FerryError(0, "invalid_request", f"no {name}: pass it or set the environment variable")
    return value


def _normalise_fingerprint(fp):
    hexdigits = fp.replace(":", "").strip().lower()
    if len(hexdigits) != 64 or any(c not in "0123456789abcdef" for c in hexdigits):
        raise FerryError(0, "invalid_request", f"{fp!r} is not a SHA-256 fingerprint (64 hex digits)")
    return hexdigits


def _never_sent(e):
    """True when the request failed before a connection was made, so it
    never reached the appliance."""
    if isinstance(e, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(e.args[0], "reason", None) if e.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


class Session:
    """A connection to one appliance as one user.

    Every argument falls back to the environment: ``FERRY_SERVER``
    (``https://host[:port]``, or several separated by commas: a cluster's
    nodes), ``FERRY_USER`` (the key owner's email, checked by the
    appliance), ``FERRY_API_KEY`` and ``FERRY_FINGERPRINT``.

    With several addresses, a request goes to the one in use; one that
    could not connect goes to the next at once, as does a read cut on its
    way. A change cut on its way is not repeated (the appliance may have
    made it): the error is raised, and the next request goes to the next
    address. This is the rule the ``ferry`` client follows.

    ``rate_limit_retries`` is how many times a request refused for going
    over the key's rate limit is retried after the wait the appliance
    names (0: raise at once).
    """

    def __init__(self, server=None, user=None, api_key=None, fingerprint=None,
                 ferry_binary=None, timeout=60, rate_limit_retries=3):
        self.servers = [a.strip().rstrip("/") for a in _env(server, "FERRY_SERVER").split(",")]
        for address in self.servers:
            if not address.startswith("https://"):
                raise FerryError(0, "invalid_request", f"{address!r}: the appliance speaks https:// only")
        self._current = 0
        self.user = user if user is not None else os.environ.get("FERRY_USER")
        self._api_key = _env(api_key, "FERRY_API_KEY")
        self.fingerprint = _normalise_fingerprint(_env(fingerprint, "FERRY_FINGERPRINT"))
        self.ferry_binary = ferry_binary or os.environ.get("FERRY_BINARY") or shutil.which("ferry") or "ferry"
        self.timeout = timeout
        self.rate_limit_retries = rate_limit_retries
        self._http = requests.Session()
        self._http.verify = False  # the pinned fingerprint is the check
        # No proxies or .netrc from the environment: a proxy's pool would
        # not carry the pinned fingerprint, and .netrc would replace the key.
        self._http.trust_env = False
        self._http.mount("https://", _PinnedAdapter(self.fingerprint))
        self._http.headers["Authorization"] = f"Bearer {self._api_key}"
        if self.user:
            self._http.headers["X-Ferry-User"] = self.user

    @property
    def server(self):
        """The address in use."""
        return self.servers[self._current]

    def __repr__(self):
        return f"ferry.Session({','.join(self.servers)!r}, user={self.user!r})"

    # --- plumbing ---------------------------------------------------------

    def _send(self, method, path, body, params):
        """One request, to the address in use and then to the next ones as
        the class's rule allows."""
        failed = []
        for _ in self.servers:
            address = self.server
            try:
                # verify=False on every call: a CA bundle named in the environment
                # (REQUESTS_CA_BUNDLE) would otherwise override the session's.
                return self._http.request(method, f"{address}/api/v1{path}", json=body, params=params,
                                          timeout=self.timeout, verify=False)
            except requests.exceptions.SSLError as e:
                raise FerryError(0, "certificate_mismatch",
                                 f"{address} did not present the certificate {self.fingerprint}: {e}") from e
            except requests.exceptions.RequestException as e:
                failed.append(f"{address}: {e}")
                self._current = (self._current + 1) % len(self.servers)
                if not (_never_sent(e) or method == "GET"):
                    break
        raise FerryError(0, "unreachable", f"cannot reach {','.join(self.servers)}: {'; '.join(failed)}")

    def _request(self, method, path, body=None, params=None):
        attempt = 0
        while True:
            resp = self._send(method, path, body, params)
            if resp.status_code == 429 and attempt < self.rate_limit_retries:
                attempt += 1
                time.sleep(float(resp.headers.get("Retry-After", "1")))
                continue
            if resp.ok:
                return resp.json() if resp.content else None
            raise self._error(resp)

    @staticmethod
    def _error(resp):
        try:
            detail = resp.json()["error"]
            code, message = detail["code"], detail["message"]
        except (ValueError, KeyError, TypeError):
            code, message = "http_error", f"HTTP {resp.status_code}: {resp.text[:200]}"
        retry = resp.headers.get("Retry-After")
        return FerryError(resp.status_code, code, message, float(retry) if retry else None)

    def _get(self, path, params=None):
        return self._request("GET", path, params=params)

    def _post(self, path, body=None):
        return self._request("POST", path, body=body if body is not None else {})

    # --- who and what -----------------------------------------------------

    def me(self):
        return User.from_json(self._get("/me"))

    def status(self):
        """The appliance at a glance (admins): firewall, ports, warnings, system."""
        return self._get("/status")

    # --- shares -----------------------------------------------------------

    def shares(self):
        return [Share.from_json(s) for s in self._get("/shares")]

    def add_root_share(self, name, path):
        """A root share over a folder on the appliance (admins)."""
        return Share.from_json(self._post("/shares", {"name": name, "path": path}))

    def add_share(self, name, root, folder):
        """A share made beneath a root share (admins)."""
        return Share.from_json(self._post("/shares", {"name": name, "root": root, "folder": folder}))

    def browse(self, share, path=""):
        """Files and folders in ``share`` at ``path``."""
        data = self._get(f"/shares/{quote(share, safe='')}/files", params={"path": path})
        return [ShareEntry.from_json(e) for e in data["entries"]]

    def mkdir(self, share, path):
        """Makes a folder (and its parents) in a share you may write."""
        self._post(f"/shares/{quote(share, safe='')}/folders", {"path": path})

    # --- users ------------------------------------------------------------

    def users(self):
        """Everyone on the appliance (admins), following the pages."""
        out, cursor = [], None
        while True:
            page = self._get("/users", params={"cursor": cursor} if cursor else None)
            out += [User.from_json(u) for u in page["users"]]
            cursor = page.get("next_cursor")
            if not cursor:
                return out

    def invite(self, email, name="", role="collaborator", service=False):
        """Makes an account and emails its owner a link to set a password (admins).

        With ``service=True`` it is a service account for automation instead:
        no password, no web login, no mail; an admin makes its API keys
        (``ferryd admin apikey create EMAIL``, or Users in the web admin).
        """
        body = {"email": email, "name": name, "role": role, "service": service}
        return User.from_json(self._post("/users", body))

    # --- jobs -------------------------------------------------------------

    def jobs(self, status=None, kind=None, finished=False, all=False, role=None, page_size=100):
        """Jobs you may see, newest first; follows the cursor through every page."""
        params = {"limit": page_size}
        for key, value in (("status", status), ("kind", kind), ("role", role)):
            if value:
                params[key] = value
        if finished:
            params["finished"] = "true"
        if all:
            params["all"] = "true"
        while True:
            page = self._get("/jobs", params=params)
            for j in page["jobs"]:
                yield Job.from_json(j)
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def job(self, job_id):
        return JobDetail.from_json(self._get(f"/jobs/{int(job_id)}"))

    def pause(self, job_id):
        return Job.from_json(self._post(f"/jobs/{int(job_id)}/pause"))

    def resume(self, job_id):
        return Job.from_json(self._post(f"/jobs/{int(job_id)}/resume"))

    def abort(self, job_id):
        return Job.from_json(self._post(f"/jobs/{int(job_id)}/abort"))

    def retry(self, job_id):
        return Job.from_json(self._post(f"/jobs/{int(job_id)}/retry"))

    def purge(self, job_id, delete_files=False):
        """Withdraws a finished or aborted job for good (and, with
        ``delete_files``, its delivery's files nobody else still needs)."""
        self._post(f"/jobs/{int(job_id)}/purge", {"delete_files": bool(delete_files)})

    def set_priority(self, job_id, glob, priority):
        """``priority``: ``"high"``, ``"low"`` or 1–1000."""
        return self._post(f"/jobs/{int(job_id)}/priority", {"glob": glob, "priority": str(priority)})

    def wait(self, job_id, timeout=3600, poll=2.0, until=("done",)):
        """Waits for a job to reach one of ``until``; raises on abort or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id).job
            if job.status in until:
                return job
            if job.status == "aborted":
                raise FerryError(0, "job_aborted", f"job {job_id} was aborted")
            if time.monotonic() > deadline:
                raise FerryError(0, "timeout", f"job {job_id} is still {job.status} after {timeout} s")
            time.sleep(poll)

    # --- deliveries -------------------------------------------------------

    def create_delivery(self, name, files, recipients, dest=None, priorities=None,
                        expires_days=None, notify_progress=False):
        """Sends ``files`` to ``recipients``, as ``ferry send`` does.

        ``files``: paths on this machine (files, folders, sequences such as
        ``shot.####.exr``) and/or ``share=NAME/path`` items already on the
        appliance. Items on the appliance need no upload; when any file is
        local, the ``ferry`` binary uploads it (once, for every recipient).
        ``dest``: ``share=NAME/folder`` where uploaded files go. When the
        files are mixed (some on the appliance, some here), the local ones
        are uploaded into ``dest`` first and the delivery then starts from
        the share, so recipients begin once that upload is complete.
        ``priorities``: ``{"*.mov": "high"}`` or ``["*.mov=high"]``.
        """
        files = [os.fspath(f) for f in files]
        recipients = list(recipients)
        if not files:
            raise FerryError(0, "invalid_request", "a delivery needs at least one file")
        if not recipients:
            raise FerryError(0, "invalid_request", "a delivery needs at least one recipient")
        rules = [f"{g}={p}" for g, p in priorities.items()] if isinstance(priorities, dict) \
            else list(priorities or [])
        local = [f for f in files if not f.startswith("share=")]
        if not local:
            body = {"name": name, "recipients": recipients, "sources": files,
                    "priorities": rules, "notify_progress": notify_progress}
            if dest:
                body["dest"] = dest
            if expires_days:
                body["expires_in_secs"] = int(expires_days * 86400)
            return Delivery.from_json(self._post("/deliveries", body))
        if not dest:
            raise FerryError(0, "invalid_request", "local files need a destination: dest='share=NAME/folder'")
        shared = [f for f in files if f.startswith("share=")]
        if shared:
            # Some files are on the appliance already, some here: the local
            # ones go up into dest first (ferry put, resumable), then one
            # delivery names them all, with no upload job of its own.
            folder = dest.rstrip("/")
            self._run_ferry([self.ferry_binary, "put", *local, folder + "/", "--json"])
            uploaded = [f"{folder}/{os.path.basename(os.path.normpath(p))}" for p in local]
            return self.create_delivery(name, shared + uploaded, recipients, priorities=rules,
                                        expires_days=expires_days, notify_progress=notify_progress)
        args = [self.ferry_binary, "send", *files, "--dest", dest, "--name", name, "--json"]
        for r in recipients:
            args += ["--to", r]
        for rule in rules:
            args += ["--priority", rule]
        if expires_days:
            args += ["--expires", f"{int(expires_days * 86400)}s"]
        if notify_progress:
            args.append("--notify-progress")
        return Delivery.from_json(self._run_ferry(args))

    def _run_ferry(self, args):
        env = dict(os.environ, FERRY_SERVER=",".join(self.servers), FERRY_API_KEY=self._api_key,
                   FERRY_FINGERPRINT=self.fingerprint)
        if self.user:
            env["FERRY_USER"] = self.user
        else:
            env.pop("FERRY_USER", None)
        try:
            done = subprocess.run(args, capture_output=True, text=True, env=env)
        except OSError as e:
            raise FerryError(0, "client_missing", f"cannot run {args[0]}: {e}") from e
        if done.returncode != 0:
            raise FerryError(0, "upload_failed", done.stderr.strip().splitlines()[-1] if done.stderr.strip()
                             else f"{args[0]} exited with {done.returncode}")
        return json.loads(done.stdout.strip().splitlines()[-1])
